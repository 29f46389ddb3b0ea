"""A device that is deleted, suspended or retired has its unfinished commands canceled with the reason,
their timers cleared, one CommandStateChanged each; finished commands and other devices' stay as they
are; a waiter wakes. Against the in-memory unit of work (the SQL side: tests/integration)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fakes.commands import FakeClock, FakeCommandsStore, FakeCommandsUnitOfWork, make_handlers

from muster.commands.v1 import events_pb2 as ev
from muster.runtime.auth import Principal, Role
from muster.runtime.db import Scope
from services.commands.creation import CommandDefinition, CreateCommand
from services.commands.device_lifecycle import DEVICE_DELETED, withdraw_commands, withdrawal_reason
from services.commands.domain import CommandState, ResultStatus

OPS = Principal(subject="ops@acme", role=Role.OPERATOR, tenant="acme")
DEVICE, NEIGHBOUR = "dev00000000000000001", "dev00000000000000002"


@pytest.fixture
def store() -> FakeCommandsStore:
    s = FakeCommandsStore()
    s.add_template("acme", "pump", CommandDefinition("reboot"))
    s.add_device("acme", DEVICE, "pump")
    s.add_device("acme", NEIGHBOUR, "pump")
    return s


@pytest.mark.parametrize(("state", "reason"), [(1, None), (2, None), (3, "device suspended"),
                                               (4, "device retired"), (0, None)])
def test_which_device_states_withdraw_commands(state: int, reason: str | None) -> None:
    assert withdrawal_reason(state) == reason


async def test_unfinished_commands_are_canceled_oldest_first_and_finished_ones_kept(
        store: FakeCommandsStore) -> None:
    clock = FakeClock()
    handlers = make_handlers(store, clock=clock)
    made = []
    for _ in range(4):
        made.append(await handlers.create_command(OPS, CreateCommand(device_id=DEVICE, command="reboot")))
        clock.advance(1)
    other = await handlers.create_command(OPS, CreateCommand(device_id=NEIGHBOUR, command="reboot"))
    now = clock.advance(1)
    async with FakeCommandsUnitOfWork(store, Scope.platform_wide()) as uow:  # SENT, DELIVERED, SUCCEEDED
        for command, step in zip(made[1:], ("sent", "delivered", "succeeded"), strict=True):
            current = command.mark_sent(now)
            if step != "sent":
                current = current.acknowledge(now)
            if step == "succeeded":
                current = current.complete(ResultStatus.SUCCEEDED, {}, "", now)
            await uow.commands.save(current)
        await uow.commit()
    store.events.clear()
    finished_at = clock.advance(5)
    async with FakeCommandsUnitOfWork(store, Scope.platform_wide()) as uow:
        withdrawn = await withdraw_commands(uow.commands, uow, tenant_id="acme", device_id=DEVICE,
                                            reason=DEVICE_DELETED, now=finished_at)
        await uow.commit()
    assert [c.id for c in withdrawn] == [c.id for c in made[:3]]
    for command in withdrawn:
        stored = store.state.commands[command.id]
        assert stored.state is CommandState.CANCELED and stored.finish_time == finished_at
        assert stored.last_transition.reason == "device deleted"
        assert stored.next_deadline() is None  # the timer is gone with it
        assert (stored.ack_deadline, stored.execution_deadline, stored.retry_time) == (None, None, None)
    assert store.state.commands[made[3].id].state is CommandState.SUCCEEDED
    assert store.state.commands[other.id].state is CommandState.PENDING
    changed = store.events_of("CommandStateChanged")
    assert len(changed) == 3
    previous = []
    for event in changed:
        payload = ev.CommandStateChanged()
        assert event.payload.Unpack(payload)
        assert (payload.command.state, payload.reason, event.tenant) == (
            int(CommandState.CANCELED), "device deleted", "acme")
        previous.append(payload.previous_state)
    assert previous == [int(CommandState.PENDING), int(CommandState.SENT), int(CommandState.DELIVERED)]


async def test_a_second_withdrawal_changes_and_emits_nothing(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    await handlers.create_command(OPS, CreateCommand(device_id=DEVICE, command="reboot"))
    for _ in range(2):
        async with FakeCommandsUnitOfWork(store, Scope.platform_wide()) as uow:
            await withdraw_commands(uow.commands, uow, tenant_id="acme", device_id=DEVICE,
                                    reason="device suspended", now=FakeClock().now)
            await uow.commit()
    assert len(store.events_of("CommandStateChanged")) == 1


async def test_another_tenants_device_of_the_same_id_is_untouched(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    mine = await handlers.create_command(OPS, CreateCommand(device_id=DEVICE, command="reboot"))
    async with FakeCommandsUnitOfWork(store, Scope.platform_wide()) as uow:
        assert await withdraw_commands(uow.commands, uow, tenant_id="globex", device_id=DEVICE,
                                       reason=DEVICE_DELETED, now=FakeClock().now) == []
    assert store.state.commands[mine.id].state is CommandState.PENDING


async def test_a_waiter_wakes_with_the_canceled_command(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    command = await handlers.create_command(OPS, CreateCommand(device_id=DEVICE, command="reboot"))
    waiting = asyncio.create_task(handlers.wait_command(OPS, DEVICE, command.id, timedelta(seconds=30)))
    await asyncio.sleep(0.01)
    async with FakeCommandsUnitOfWork(store, Scope.platform_wide()) as uow:
        await withdraw_commands(uow.commands, uow, tenant_id="acme", device_id=DEVICE, reason="device retired",
                                now=FakeClock().now)
        await uow.commit()
    done = await asyncio.wait_for(waiting, 2)
    assert (done.state, done.last_transition.reason) == (CommandState.CANCELED, "device retired")
