"""What the CommandService API end-to-end tests share: a channel to the commands service (fixture
`commands_channel`), and a tenant device whose template defines commands, made through the registry's
API and waited for until the commands service's projection of the registry has it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from helpers import RPC_TIMEOUT, PlatformLike, TenantTokens, bearer

from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import command_service_pb2_grpc as svc_grpc
from muster.commands.v1 import resources_pb2 as cpb
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.registry.v1 import template_service_pb2 as tpl
from muster.registry.v1 import template_service_pb2_grpc as tpl_grpc

PROJECTION_TIMEOUT = 15.0
REBOOT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["mode"],
                 "properties": {"mode": {"type": "string", "enum": ["soft", "hard"]},
                                "delay": {"type": "integer", "minimum": 0, "maximum": 60}}}


@pytest.fixture(scope="module")
async def commands_channel(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["commands"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@dataclass(frozen=True)
class CommandableDevice:
    tenant: TenantTokens
    name: str  # devices/{id}


def struct(value: dict[str, Any]) -> Struct:
    s = Struct()
    s.update(value)
    return s


async def make_commandable_device(channel: grpc.aio.Channel, commands_channel: grpc.aio.Channel,
                                  tenant: TenantTokens) -> CommandableDevice:
    """A template with `reboot` (REBOOT_SCHEMA) and `ping`, and a device of it, known to commands."""
    md = bearer(tenant.admin)
    template = await tpl_grpc.TemplateServiceStub(channel).CreateTemplate(tpl.CreateTemplateRequest(
        template=tpb.DeviceTemplate(display_name="Pump", commands=[
            tpb.CommandDefinition(name="reboot", parameters=struct(REBOOT_SCHEMA)),
            tpb.CommandDefinition(name="ping")])), metadata=md, timeout=RPC_TIMEOUT)
    device = await dev_grpc.DeviceServiceStub(channel).CreateDevice(dev.CreateDeviceRequest(
        device=pb.Device(display_name="pump 1", template=template.name)), metadata=md, timeout=RPC_TIMEOUT)
    stub = svc_grpc.CommandServiceStub(commands_channel)
    deadline = asyncio.get_running_loop().time() + PROJECTION_TIMEOUT
    while True:  # a command no template has: NOT_FOUND (device unknown yet), then INVALID_ARGUMENT
        try:
            await stub.CreateCommand(svc.CreateCommandRequest(parent=device.name, command=cpb.Command(
                command="no_such_command")), metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
                return CommandableDevice(tenant, device.name)
            if error.code() is not grpc.StatusCode.NOT_FOUND or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.1)
