"""Device replies and presence applied against the real PostgreSQL: ack and result move the command,
a redelivered reply is applied once, another device's command is refused, a late reply is recorded
and changes nothing; presence only moves forward in time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from helpers import PlatformLike, unique_id
from sqlalchemy import select

from muster.runtime.db import Scope
from muster.runtime.device_inbox import DeviceError, DeviceMessage
from services.commands.delivery_tables import device_presence
from services.commands.domain import Command, CommandState
from services.commands.replies import UNKNOWN_COMMAND
from services.commands.reply_handler import ReplyHandler
from services.commands.unit_of_work import UnitOfWorkFactory

from .commands_delivery_support import add_commands, get_command, new_command, new_device_id, set_presence
from .commands_delivery_support import commands_db as commands_db  # fixture
from .commands_delivery_support import commands_uow as commands_uow  # fixture

pytestmark = pytest.mark.platform

_seq = itertools.count(int(datetime.now(UTC).timestamp() * 1000) * 1000)  # unique in applied_replies


def reply(device: str, command_id: str, kind: str, body: bytes = b"{}", seq: int | None = None) -> DeviceMessage:
    return DeviceMessage(device, f"muster/v1/devices/{device}/commands/{command_id}/{kind}", body,
                         seq if seq is not None else next(_seq), datetime.now(UTC))


async def sent_command(uow: UnitOfWorkFactory) -> Command:
    """A command the platform sent (SENT, waiting an hour for its ack: no timer fires meanwhile)."""
    tenant, device = unique_id("cmd"), new_device_id()
    command = new_command(tenant, device)
    await add_commands(uow, tenant, [command])
    async with uow(Scope.platform_wide()) as work:
        stored = await work.commands.get(command.id, lock=True)
        assert stored is not None
        await work.commands.save(stored.mark_sent(datetime.now(UTC)))
        await work.commit()
    return command


async def test_ack_then_result_succeed_and_a_redelivered_result_is_applied_once(
        platform: PlatformLike, commands_uow: UnitOfWorkFactory) -> None:
    command, handler = await sent_command(commands_uow), ReplyHandler(commands_uow)
    result = await handler([reply(command.device_id, command.id, "ack")])
    assert result.errors == []
    assert (await get_command(commands_uow, command.id)).state is CommandState.DELIVERED
    done = reply(command.device_id, command.id, "result", b'{"status": "succeeded", "output": {"up": 1}}')
    await handler([done])
    await handler([done])  # JetStream delivered it again (stopped between commit and ack)
    stored = await get_command(commands_uow, command.id)
    assert stored.state is CommandState.SUCCEEDED and stored.output == {"up": 1}
    assert len(stored.history) == 4  # created, sent, delivered, succeeded: the redelivery left no trace


async def test_a_late_result_is_recorded_and_changes_nothing(
        platform: PlatformLike, commands_uow: UnitOfWorkFactory) -> None:
    command, handler = await sent_command(commands_uow), ReplyHandler(commands_uow)
    await handler([reply(command.device_id, command.id, "result", b'{"status": "failed", "error": "no"}')])
    await handler([reply(command.device_id, command.id, "result", b'{"status": "succeeded"}')])
    stored = await get_command(commands_uow, command.id)
    assert stored.state is CommandState.FAILED and stored.error == "no"
    assert stored.history[-1].changed is False and "late" in stored.history[-1].reason


async def test_a_reply_for_another_devices_or_an_unknown_command_is_refused(
        platform: PlatformLike, commands_uow: UnitOfWorkFactory) -> None:
    command, handler = await sent_command(commands_uow), ReplyHandler(commands_uow)
    intruder = new_device_id()
    result = await handler([reply(intruder, command.id, "result", b'{"status": "succeeded"}'),
                            reply(intruder, "0" * 32, "ack"),
                            reply(intruder, command.id, "result", b"not json")])
    codes = [(e.device_id, e.code) for e in result.errors if isinstance(e, DeviceError)]
    assert sorted(codes) == sorted([(intruder, "NOT_JSON"), (intruder, UNKNOWN_COMMAND),
                                    (intruder, UNKNOWN_COMMAND)])
    assert (await get_command(commands_uow, command.id)).state is CommandState.SENT


async def test_presence_only_moves_forward_in_time(platform: PlatformLike, commands_uow: UnitOfWorkFactory) -> None:
    tenant, device, now = unique_id("cmd"), new_device_id(), datetime.now(UTC)
    assert await set_presence(commands_uow, tenant, device, 2, since=now)
    assert not await set_presence(commands_uow, tenant, device, 4, since=now - timedelta(seconds=1))  # late
    async with commands_uow(Scope.platform_wide()) as work:
        assert await work.delivery.online(device)
    assert await set_presence(commands_uow, tenant, device, 4, since=now + timedelta(seconds=1))
    async with commands_uow(Scope.platform_wide()) as work:
        assert not await work.delivery.online(device)
    for scope, rows in ((Scope.of_tenant(tenant), 1), (Scope.of_tenant(unique_id("other")), 0)):  # RLS
        async with commands_uow(scope) as work:
            found = (await work.connection.execute(
                select(device_presence).where(device_presence.c.device_id == device))).all()
        assert len(found) == rows
