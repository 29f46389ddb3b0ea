"""CommandService through gRPC on the running platform: create (defaults, validation against the
device's template naming the field, idempotency), get, list per device and tenant-wide with filter and
pages, cancel, wait (returns at the deadline with the current state, at once for a finished command,
and when another call finishes it), roles and tenant isolation."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from helpers import RPC_TIMEOUT, TenantTokens, bearer, create_tenant, error_reason, field_violations

from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import command_service_pb2_grpc as svc_grpc
from muster.commands.v1 import resources_pb2 as cpb

from .commands_api_support import CommandableDevice, make_commandable_device, struct
from .commands_api_support import commands_channel as commands_channel  # fixture
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import fails
from .registry_grpc_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform
Code = grpc.StatusCode


@pytest.fixture
async def device(channel: grpc.aio.Channel, commands_channel: grpc.aio.Channel,
                 tenant: TenantTokens) -> CommandableDevice:
    return await make_commandable_device(channel, commands_channel, tenant)


@pytest.fixture
def stub(commands_channel: grpc.aio.Channel) -> svc_grpc.CommandServiceAsyncStub:
    return svc_grpc.CommandServiceStub(commands_channel)


def reboot(mode: str = "soft", **fields: object) -> cpb.Command:
    return cpb.Command(command="reboot", parameters=struct({"mode": mode, **fields}))


async def create(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice, command: cpb.Command,
                 request_id: str = "") -> cpb.Command:
    return await stub.CreateCommand(svc.CreateCommandRequest(parent=device.name, command=command,
                                                             request_id=request_id),
                                    metadata=bearer(device.tenant.operator), timeout=RPC_TIMEOUT)


async def test_create_get_and_defaults(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice) -> None:
    created = await create(stub, device, reboot(delay=5))
    assert created.name.startswith(f"{device.name}/commands/") and created.state == cpb.COMMAND_STATE_PENDING
    assert created.creator == f"operator@{device.tenant.id}"
    assert created.ttl.seconds == 3600 and created.retry_policy.max_attempts == 3
    assert created.expire_time.seconds == created.create_time.seconds + 3600
    assert [h.to_state for h in created.history] == [cpb.COMMAND_STATE_PENDING]
    got = await stub.GetCommand(svc.GetCommandRequest(name=created.name), metadata=bearer(device.tenant.viewer),
                                timeout=RPC_TIMEOUT)
    assert got.name == created.name and dict(got.parameters) == {"mode": "soft", "delay": 5.0}


@pytest.mark.parametrize(("command", "field", "words"), [
    (cpb.Command(command="selfdestruct"), "command.command", "not a command of the device's template"),
    (reboot(mode="medium"), "command.parameters.mode", "must be one of 'soft', 'hard'"),
    (reboot(delay=61), "command.parameters.delay", "must be at most 60"),
    (cpb.Command(command="reboot", parameters=struct({"delay": 1})), "command.parameters.mode", "is required"),
    (reboot(force=True), "command.parameters.force", "is not a parameter of this command"),
    (cpb.Command(command="reboot", parameters=struct({"mode": "soft"}), ttl=Duration(seconds=30 * 86400)),
     "command.ttl", "at most"),
])
async def test_validation_errors_name_the_field(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice,
                                                command: cpb.Command, field: str, words: str) -> None:
    error = await fails(create(stub, device, command))
    assert error.code() is Code.INVALID_ARGUMENT
    violations = field_violations(error)
    assert field in violations, violations
    assert words in violations[field]


async def test_bad_names_and_unknown_devices(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice) -> None:
    md = bearer(device.tenant.viewer)
    error = await fails(stub.GetCommand(svc.GetCommandRequest(name="devices/x/commands/nope"), metadata=md,
                                        timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT and "name" in field_violations(error)
    error = await fails(stub.GetCommand(svc.GetCommandRequest(name=f"{device.name}/commands/{'0' * 32}"),
                                        metadata=md, timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND
    error = await fails(stub.CreateCommand(svc.CreateCommandRequest(parent="devices/unknown0000000000000",
                                                                    command=reboot()),
                                           metadata=bearer(device.tenant.operator), timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND


async def test_idempotency(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice) -> None:
    first = await create(stub, device, reboot(), request_id="deploy-42")
    again = await create(stub, device, reboot(), request_id="deploy-42")
    assert again.name == first.name
    error = await fails(create(stub, device, reboot(mode="hard"), request_id="deploy-42"))
    assert error.code() is Code.ALREADY_EXISTS and error_reason(error) == "REQUEST_ID_REUSED"
    assert first.name in (error.details() or "")


async def test_list_filter_and_pages(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice,
                                     channel: grpc.aio.Channel, commands_channel: grpc.aio.Channel) -> None:
    made = [await create(stub, device, reboot()) for _ in range(5)]
    ping = await create(stub, device, cpb.Command(command="ping"))
    other = await make_commandable_device(channel, commands_channel, device.tenant)  # same tenant, second device
    elsewhere = await create(stub, other, cpb.Command(command="ping"))
    md = bearer(device.tenant.viewer)

    seen, token = [], ""
    while True:
        page = await stub.ListCommands(svc.ListCommandsRequest(parent=device.name, page_size=2, page_token=token,
                                                               order_by="create_time"), metadata=md,
                                       timeout=RPC_TIMEOUT)
        assert len(page.commands) <= 2
        seen += [c.name for c in page.commands]
        token = page.next_page_token
        if not token:
            break
    assert seen == [c.name for c in [*made, ping]]

    reboots = await stub.ListCommands(svc.ListCommandsRequest(parent=device.name, filter='command = "reboot"'),
                                      metadata=md, timeout=RPC_TIMEOUT)
    assert {c.name for c in reboots.commands} == {c.name for c in made}
    everywhere = await stub.ListCommands(svc.ListCommandsRequest(parent="devices/-", filter="state = PENDING"),
                                         metadata=md, timeout=RPC_TIMEOUT)
    assert {c.name for c in everywhere.commands} == {c.name for c in [*made, ping, elsewhere]}
    error = await fails(stub.ListCommands(svc.ListCommandsRequest(parent=device.name, filter="colour = 1"),
                                          metadata=md, timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT and "filter" in field_violations(error)


async def test_cancel_then_wait_returns_at_once(stub: svc_grpc.CommandServiceAsyncStub,
                                                device: CommandableDevice) -> None:
    created = await create(stub, device, reboot())
    canceled = await stub.CancelCommand(svc.CancelCommandRequest(name=created.name, reason="wrong pump"),
                                        metadata=bearer(device.tenant.operator), timeout=RPC_TIMEOUT)
    assert canceled.state == cpb.COMMAND_STATE_CANCELED and canceled.HasField("finish_time")
    assert canceled.history[-1].reason == f"canceled by operator@{device.tenant.id}: wrong pump"
    error = await fails(stub.CancelCommand(svc.CancelCommandRequest(name=created.name),
                                           metadata=bearer(device.tenant.operator), timeout=RPC_TIMEOUT))
    assert error.code() is Code.FAILED_PRECONDITION and error_reason(error) == "COMMAND_FINISHED"
    started = asyncio.get_running_loop().time()
    waited = await stub.WaitCommand(svc.WaitCommandRequest(name=created.name, timeout=Duration(seconds=10)),
                                    metadata=bearer(device.tenant.viewer), timeout=RPC_TIMEOUT)
    assert waited.state == cpb.COMMAND_STATE_CANCELED and asyncio.get_running_loop().time() - started < 2


async def test_wait_returns_when_another_call_finishes_it(stub: svc_grpc.CommandServiceAsyncStub,
                                                          device: CommandableDevice) -> None:
    created = await create(stub, device, reboot())
    waiting = asyncio.ensure_future(stub.WaitCommand(
        svc.WaitCommandRequest(name=created.name, timeout=Duration(seconds=20)),
        metadata=bearer(device.tenant.viewer), timeout=30))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await stub.CancelCommand(svc.CancelCommandRequest(name=created.name), metadata=bearer(device.tenant.operator),
                             timeout=RPC_TIMEOUT)
    done = await asyncio.wait_for(waiting, 5)
    assert done.state == cpb.COMMAND_STATE_CANCELED


async def test_wait_gives_up_at_the_callers_deadline(stub: svc_grpc.CommandServiceAsyncStub,
                                                     device: CommandableDevice) -> None:
    created = await create(stub, device, reboot())
    started = asyncio.get_running_loop().time()
    waited = await stub.WaitCommand(svc.WaitCommandRequest(name=created.name), metadata=bearer(device.tenant.viewer),
                                    timeout=2.0)  # no `timeout` field: the call's deadline bounds the wait
    assert waited.state == cpb.COMMAND_STATE_PENDING
    assert 1.0 < asyncio.get_running_loop().time() - started < 2.0


async def test_roles_and_tenants(stub: svc_grpc.CommandServiceAsyncStub, device: CommandableDevice,
                                 channel: grpc.aio.Channel, admin_token: str) -> None:
    error = await fails(stub.CreateCommand(svc.CreateCommandRequest(parent=device.name, command=reboot()),
                                           metadata=bearer(device.tenant.viewer), timeout=RPC_TIMEOUT))
    assert error.code() is Code.PERMISSION_DENIED
    created = await create(stub, device, reboot())
    stranger = await create_tenant(channel, admin_token)
    error = await fails(stub.GetCommand(svc.GetCommandRequest(name=created.name), metadata=bearer(stranger.viewer),
                                        timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND
    listed = await stub.ListCommands(svc.ListCommandsRequest(parent="devices/-"), metadata=bearer(stranger.viewer),
                                     timeout=RPC_TIMEOUT)
    assert list(listed.commands) == []
