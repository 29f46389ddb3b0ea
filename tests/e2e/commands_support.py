"""What the command end-to-end tests share: a device with a template that defines commands (registry
events on JetStream, as the registry's relay publishes them), an operator token for its tenant, the
CommandService stub, and the device itself as a real MQTT 3.1.1 client.

Test modules import the fixtures under their own names
(`from .commands_support import commands as commands  # fixture`), and `commands_channel` with it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiomqtt
import grpc
import orjson
import pytest
from google.protobuf.duration_pb2 import Duration
from helpers import RPC_TIMEOUT, PlatformLike, bearer, token_codec, unique_id

from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import command_service_pb2_grpc as svc_grpc
from muster.commands.v1 import resources_pb2 as cpb
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.auth import Role
from muster.runtime.secrets import new_device_secret

from .commands_api_support import commands_channel as commands_channel  # fixture
from .edge_support import EdgeDevice, connected, publish_registry_event, set_secrets
from .twin_support import next_json

if TYPE_CHECKING:
    CommandsStub = svc_grpc.CommandServiceAsyncStub
else:
    CommandsStub = svc_grpc.CommandServiceStub


@dataclass
class CommandDevice:
    device: EdgeDevice
    operator: str

    @property
    def id(self) -> str:
        return self.device.id

    @property
    def name(self) -> str:
        return self.device.name

    def topic(self, levels: str) -> str:
        return f"muster/v1/devices/{self.device.id}/{levels}"


@pytest.fixture
def commands(commands_channel: grpc.aio.Channel) -> CommandsStub:
    stub: CommandsStub = svc_grpc.CommandServiceStub(commands_channel)
    return stub


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


async def command_device(platform: PlatformLike, commands: CommandsStub, timeout: float = 30.0) -> CommandDevice:
    """A new ACTIVE device whose template defines `reboot` ({"delay": number}) and `ping`, with its first
    secret, once the commands service's projection knows it."""
    tenant = unique_id("cmd")
    template = tpb.DeviceTemplate(name=f"templates/tpl-{uuid.uuid4().hex[:12]}", commands=[
        tpb.CommandDefinition(name="reboot"), tpb.CommandDefinition(name="ping")])
    template.commands[0].parameters.update({"type": "object", "properties": {"delay": {"type": "number"}}})
    template.update_time.GetCurrentTime()
    await publish_registry_event(platform, tenant, template.name, ev.TemplateCreated(template=template))
    device = EdgeDevice(id=f"dev{uuid.uuid4().hex[:17]}", tenant=tenant, secret=new_device_secret())
    created = pb.Device(name=device.name, state=pb.DEVICE_STATE_ACTIVE, template=template.name)
    created.update_time.GetCurrentTime()
    await publish_registry_event(platform, tenant, device.name, ev.DeviceCreated(device=created))
    await set_secrets(platform, device, device.secret)
    token, _ = token_codec(platform).issue(subject=f"ops@{tenant}", role=Role.OPERATOR, tenant=tenant,
                                           ttl=timedelta(hours=1))
    made = CommandDevice(device, token)
    deadline = time.monotonic() + timeout
    while True:  # an unknown command is INVALID_ARGUMENT once the device and its template are projected
        try:
            await create(commands, made, "no_such_command")
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return made
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def create(commands: CommandsStub, device: CommandDevice, name: str = "reboot", *,
                 parameters: dict[str, Any] | None = None, **settings: Any) -> cpb.Command:
    """`settings`: ttl / delivery_timeout / execution_timeout in seconds, max_attempts, initial_backoff."""
    command = cpb.Command(command=name)
    command.parameters.update(parameters if parameters is not None else ({"delay": 1} if name == "reboot" else {}))
    for field in ("ttl", "delivery_timeout", "execution_timeout"):
        if field in settings:
            getattr(command, field).CopyFrom(seconds(settings[field]))
    if "max_attempts" in settings:
        command.retry_policy.max_attempts = settings["max_attempts"]
    if "initial_backoff" in settings:
        command.retry_policy.initial_backoff.CopyFrom(seconds(settings["initial_backoff"]))
    return await commands.CreateCommand(svc.CreateCommandRequest(parent=device.name, command=command),
                                        metadata=bearer(device.operator), timeout=RPC_TIMEOUT)


async def get(commands: CommandsStub, device: CommandDevice, name: str) -> cpb.Command:
    return await commands.GetCommand(svc.GetCommandRequest(name=name), metadata=bearer(device.operator),
                                     timeout=RPC_TIMEOUT)


async def wait(commands: CommandsStub, device: CommandDevice, name: str, within: float = 30.0) -> cpb.Command:
    """The command once it is terminal (WaitCommand, repeated until `within`)."""
    deadline = time.monotonic() + within
    while True:
        command = await commands.WaitCommand(svc.WaitCommandRequest(name=name, timeout=seconds(10)),
                                             metadata=bearer(device.operator), timeout=15)
        if command.state >= cpb.COMMAND_STATE_SUCCEEDED or time.monotonic() > deadline:
            return command
        await asyncio.sleep(0.05)


@asynccontextmanager
async def online(platform: PlatformLike, device: CommandDevice) -> AsyncIterator[aiomqtt.Client]:
    """The device connected and subscribed to its commands and errors."""
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("commands/+"), qos=1)
        await mqtt.subscribe(device.topic("errors"), qos=0)
        yield mqtt


async def no_message(mqtt: aiomqtt.Client, topic: str, within: float) -> bool:
    try:
        await next_json(mqtt, topic, within)
    except TimeoutError:
        return True
    return False


async def reply(mqtt: aiomqtt.Client, device: CommandDevice, command_id: str, kind: str,
                body: dict[str, Any] | bytes | None = None) -> None:
    payload = body if isinstance(body, bytes) else orjson.dumps(body or {})
    await mqtt.publish(device.topic(f"commands/{command_id}/{kind}"), payload, qos=1)


def command_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]
