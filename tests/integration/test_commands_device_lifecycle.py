"""The commands projection against the real PostgreSQL, as the commands service's role: a DeviceDeleted
cancels the device's unfinished commands in the event's own transaction (state, cleared timer, history
and one CommandStateChanged each in the outbox); a suspension does the same only when it is the
device's newest state; and CreateCommand's shared device lock makes a deletion wait for a create in
flight, so the new command is canceled too instead of waiting for a device that is gone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message
from sqlalchemy import select

from muster.commands.v1 import events_pb2 as cev
from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as rev
from muster.registry.v1 import resources_pb2 as rpb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.db import Database, Scope
from muster.runtime.events import new_event
from services.commands.domain import Command, CommandState, ResultStatus
from services.commands.projection import apply_created_devices, apply_event
from services.commands.projection_repository import ProjectionRepository
from services.commands.tables import commands, infrastructure
from services.commands.unit_of_work import UnitOfWorkFactory

from .commands_delivery_support import add_commands, get_command, new_command, new_device_id
from .commands_delivery_support import commands_db as commands_db  # fixture
from .commands_delivery_support import commands_uow as commands_uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime.now(UTC).replace(microsecond=0)


def _event(payload: Message, tenant: str, at: datetime) -> Event:
    return new_event(payload, source="registry", tenant=tenant, subject="x", time=at)


def _device(device_id: str, template_id: str, state: int, update_time: datetime) -> rpb.Device:
    device = rpb.Device(name=f"devices/{device_id}", template=f"templates/{template_id}",
                        state=rpb.DeviceState.ValueType(state))
    device.update_time.FromDatetime(update_time)
    return device


async def apply(db: Database, event: Event) -> None:
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_event(event, conn)


@pytest.fixture
async def device(commands_db: Database) -> AsyncIterator[tuple[str, str]]:
    """(tenant, device id): an ACTIVE device of a template with a `reboot` command, in the projection."""
    tenant, template_id, device_id = f"c-{uuid.uuid4().hex[:10]}", f"t{uuid.uuid4().hex[:11]}", new_device_id()
    template = tpb.DeviceTemplate(name=f"templates/{template_id}", commands=[tpb.CommandDefinition(name="reboot")])
    template.update_time.FromDatetime(T0)
    await apply(commands_db, _event(rev.TemplateCreated(template=template), tenant, T0))
    await apply(commands_db, _event(rev.DeviceCreated(device=_device(device_id, template_id, 2, T0)), tenant, T0))
    yield tenant, device_id


async def _in_states(uow: UnitOfWorkFactory, tenant: str, device_id: str) -> list[Command]:
    """PENDING, SENT, DELIVERED and SUCCEEDED commands of the device, oldest first."""
    made = [new_command(tenant, device_id, now=T0 + timedelta(seconds=i)) for i in range(4)]
    await add_commands(uow, tenant, made)
    now = datetime.now(UTC)
    async with uow(Scope.of_tenant(tenant)) as work:
        for command, steps in zip(made[1:], (1, 2, 3), strict=True):
            current = await work.commands.get(command.id, lock=True)
            assert current is not None
            current = current.mark_sent(now)
            if steps >= 2:
                current = current.acknowledge(now)
            if steps >= 3:
                current = current.complete(ResultStatus.SUCCEEDED, {}, "", now)
            await work.commands.save(current)
        await work.commit()
    return made


async def _state_changes(db: Database, made: list[Command]) -> list[cev.CommandStateChanged]:
    """The CommandStateChanged events of these commands in the outbox, in order."""
    out = infrastructure.outbox
    async with db.transaction(Scope.platform_wide()) as conn:
        rows = (await conn.execute(select(out.c.payload).where(
            out.c.type == "CommandStateChanged", out.c.subject.in_([c.name for c in made])).order_by(out.c.seq))).all()
    found = []
    for row in rows:
        event, payload = Event.FromString(row.payload), cev.CommandStateChanged()
        assert event.payload.Unpack(payload)
        found.append(payload)
    return found


async def test_a_deletion_cancels_the_unfinished_commands_with_their_events(
        commands_db: Database, commands_uow: UnitOfWorkFactory, device: tuple[str, str]) -> None:
    tenant, device_id = device
    made = await _in_states(commands_uow, tenant, device_id)
    deleted = _event(rev.DeviceDeleted(name=f"devices/{device_id}"), tenant, datetime.now(UTC))
    await apply(commands_db, deleted)
    after = [await get_command(commands_uow, c.id) for c in made]
    assert [c.state for c in after] == [CommandState.CANCELED] * 3 + [CommandState.SUCCEEDED]
    for command in after[:3]:
        assert command.last_transition.reason == "device deleted" and command.finish_time is not None
    async with commands_db.transaction(Scope.platform_wide()) as conn:
        due = (await conn.execute(select(commands.c.id, commands.c.due_at).where(
            commands.c.device_id == device_id).order_by(commands.c.create_time))).all()
    assert [row.due_at for row in due] == [None] * 4  # no timer left to fire
    changes = await _state_changes(commands_db, made)
    canceled = [c for c in changes if c.command.state == int(CommandState.CANCELED)]
    assert [(c.previous_state, c.reason) for c in canceled] == [
        (int(CommandState.PENDING), "device deleted"), (int(CommandState.SENT), "device deleted"),
        (int(CommandState.DELIVERED), "device deleted")]
    await apply(commands_db, deleted)  # applied again (no applied-events record here): nothing more
    assert len(await _state_changes(commands_db, made)) == len(changes)


async def test_only_the_newest_suspension_cancels(commands_db: Database, commands_uow: UnitOfWorkFactory,
                                                  device: tuple[str, str]) -> None:
    tenant, device_id = device
    template_id = "unused"  # the projection keeps it; commands of the device exist already
    command = new_command(tenant, device_id)
    await add_commands(commands_uow, tenant, [command])
    newer = T0 + timedelta(minutes=2)
    await apply(commands_db, _event(rev.DeviceUpdated(device=_device(device_id, template_id, 2, newer)), tenant, newer))
    late = T0 + timedelta(minutes=1)  # a suspension from before the newer ACTIVE state, applied late
    await apply(commands_db, _event(rev.DeviceStateChanged(device=_device(device_id, template_id, 3, late)),
                                    tenant, late))
    assert (await get_command(commands_uow, command.id)).state is CommandState.PENDING
    newest = T0 + timedelta(minutes=3)
    await apply(commands_db, _event(rev.DeviceStateChanged(device=_device(device_id, template_id, 3, newest)),
                                    tenant, newest))
    suspended = await get_command(commands_uow, command.id)
    assert (suspended.state, suspended.last_transition.reason) == (CommandState.CANCELED, "device suspended")


async def test_a_deletion_waits_for_a_create_in_flight_and_cancels_it(
        commands_db: Database, commands_uow: UnitOfWorkFactory, device: tuple[str, str]) -> None:
    tenant, device_id = device
    command = new_command(tenant, device_id)
    deleted = _event(rev.DeviceDeleted(name=f"devices/{device_id}"), tenant, datetime.now(UTC))
    async with commands_uow(Scope.of_tenant(tenant)) as work:  # what CreateCommand does, held open
        await work.projection.lock_device(device_id)
        assert await work.projection.device_commands(device_id) is not None
        await work.commands.add(command)
        deletion = asyncio.create_task(apply(commands_db, deleted))
        await asyncio.sleep(0.5)
        assert not deletion.done()  # it waits for the create's lock
        await work.commit()
    await asyncio.wait_for(deletion, 10)
    canceled = await get_command(commands_uow, command.id)
    assert (canceled.state, canceled.last_transition.reason) == (CommandState.CANCELED, "device deleted")
    async with commands_uow(Scope.of_tenant(tenant)) as work:  # and a create after it finds no device
        await work.projection.lock_device(device_id)
        assert await work.projection.device_commands(device_id) is None


async def test_a_batch_of_created_devices_projects_each_live_device_once(commands_db: Database) -> None:
    tenant, fresh, buried = f"c-{uuid.uuid4().hex[:10]}", new_device_id(), new_device_id()
    await apply(commands_db, _event(rev.DeviceDeleted(name=f"devices/{buried}"), tenant, T0 + timedelta(seconds=5)))
    batch = [_event(rev.DeviceCreated(device=_device(device_id, "tpl", 2, T0 + timedelta(seconds=s))), tenant,
                    T0 + timedelta(seconds=s)) for device_id, s in ((fresh, 2), (fresh, 1), (buried, 1))]
    async with commands_db.transaction(Scope.platform_wide()) as conn:
        await apply_created_devices(batch, conn)
        projection = ProjectionRepository(conn)
        seen = await projection.device_commands(fresh)
        assert seen is not None and (seen.state, seen.template_id) == (2, "tpl")
        assert await projection.device_commands(buried) is None
