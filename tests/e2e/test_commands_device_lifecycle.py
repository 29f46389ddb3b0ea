"""The registry's device lifecycle reaches the commands on the running platform: deleting a device
cancels its waiting commands ("device deleted"), suspending one cancels them too ("device suspended"),
and a WaitCommand in progress returns with the canceled command; a command of another device is kept."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from helpers import RPC_TIMEOUT, TenantTokens, bearer

from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import command_service_pb2_grpc as svc_grpc
from muster.commands.v1 import resources_pb2 as cpb
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc

from .commands_api_support import CommandableDevice, make_commandable_device, struct
from .commands_api_support import commands_channel as commands_channel  # fixture
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform


async def _pending(commands: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice) -> cpb.Command:
    """A command for the (offline) device: it waits PENDING."""
    return await commands.CreateCommand(svc.CreateCommandRequest(parent=device.name, command=cpb.Command(
        command="reboot", parameters=struct({"mode": "soft"}))), metadata=bearer(device.tenant.operator),
        timeout=RPC_TIMEOUT)


async def _wait(commands: svc_grpc.CommandServiceAsyncStub, tenant: TenantTokens, name: str) -> cpb.Command:
    return await commands.WaitCommand(svc.WaitCommandRequest(name=name, timeout=Duration(seconds=20)),
                                      metadata=bearer(tenant.viewer), timeout=25)


@pytest.mark.parametrize("change", ["delete", "suspend"])
async def test_a_deleted_or_suspended_device_has_its_commands_canceled(
        change: str, channel: grpc.aio.Channel, commands_channel: grpc.aio.Channel, tenant: TenantTokens) -> None:
    commands = svc_grpc.CommandServiceStub(commands_channel)
    devices = dev_grpc.DeviceServiceStub(channel)
    device = await make_commandable_device(channel, commands_channel, tenant)
    other = await make_commandable_device(channel, commands_channel, tenant)
    first, second, kept = await _pending(commands, device), await _pending(commands, device), \
        await _pending(commands, other)
    waiting = asyncio.create_task(_wait(commands, tenant, first.name))
    await asyncio.sleep(0.2)
    md = bearer(tenant.admin)
    if change == "delete":
        await devices.DeleteDevice(dev.DeleteDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    else:
        await devices.ActivateDevice(dev.ActivateDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
        await devices.SuspendDevice(dev.SuspendDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    reason = "device deleted" if change == "delete" else "device suspended"
    done = await asyncio.wait_for(waiting, 25)
    assert (done.state, done.history[-1].reason) == (cpb.COMMAND_STATE_CANCELED, reason)
    assert done.history[-1].from_state == cpb.COMMAND_STATE_PENDING and done.HasField("finish_time")
    later = await _wait(commands, tenant, second.name)
    assert (later.state, later.history[-1].reason) == (cpb.COMMAND_STATE_CANCELED, reason)
    untouched = await commands.GetCommand(svc.GetCommandRequest(name=kept.name), metadata=bearer(tenant.viewer),
                                          timeout=RPC_TIMEOUT)
    assert untouched.state == cpb.COMMAND_STATE_PENDING
