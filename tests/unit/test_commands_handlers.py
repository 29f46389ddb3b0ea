"""Commands use cases against the in-memory unit of work: validation against the device's template,
idempotency, tenant isolation, listing with filter and pages, cancel, wait, and the events each emits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fakes.commands import FakeClock, FakeCommandsStore, FakeCommandsUnitOfWork, make_handlers

from muster.commands.v1 import events_pb2 as ev
from muster.runtime.auth import Principal, Role
from muster.runtime.db import Scope
from muster.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.commands.creation import CommandDefinition, CreateCommand
from services.commands.domain import CommandState, ResultStatus

OPS = Principal(subject="ops@acme", role=Role.OPERATOR, tenant="acme")
OTHER = Principal(subject="ops@globex", role=Role.OPERATOR, tenant="globex")
DEVICE = "dev00000000000000001"
REBOOT = CommandDefinition("reboot", {"type": "object", "additionalProperties": False,
                                      "properties": {"delay": {"type": "integer", "minimum": 0, "maximum": 60}}},
                           default_timeout=timedelta(seconds=90))
PING = CommandDefinition("ping")


@pytest.fixture
def store() -> FakeCommandsStore:
    s = FakeCommandsStore()
    s.add_template("acme", "pump", REBOOT)
    s.add_template("", "system-ping", PING)  # a system template: every tenant reads it
    s.add_device("acme", DEVICE, "pump")
    s.add_device("acme", "dev00000000000000002", "system-ping")
    s.add_device("acme", "dev00000000000000003", None)
    s.add_device("acme", "dev00000000000000004", "pump", state=3)  # SUSPENDED
    s.add_template("globex", "globex-pump", REBOOT)
    s.add_device("globex", "dev00000000000000009", "globex-pump")
    s.add_device("globex", "dev00000000000000008", "pump")  # a template of another tenant: not visible
    return s


def reboot(**fields: object) -> CreateCommand:
    return CreateCommand(**{"device_id": DEVICE, "command": "reboot", "parameters": {"delay": 5.0}, **fields})  # type: ignore[arg-type]


async def test_create_resolves_defaults_and_emits_created(store: FakeCommandsStore) -> None:
    command = await make_handlers(store).create_command(OPS, reboot())
    assert command.state is CommandState.PENDING and command.creator == "ops@acme" and command.tenant_id == "acme"
    assert command.execution_timeout == timedelta(seconds=90)  # the template definition's default_timeout
    assert command.ttl == timedelta(hours=1) and command.retry.max_attempts == 3  # the service's
    assert store.state.commands[command.id].state is CommandState.PENDING
    [created] = store.events_of("CommandCreated")
    payload = ev.CommandCreated()
    assert created.payload.Unpack(payload) and payload.command.name == command.name
    assert created.tenant == "acme" and created.subject == command.name


async def test_request_values_override_the_defaults(store: FakeCommandsStore) -> None:
    command = await make_handlers(store).create_command(OPS, reboot(
        ttl=timedelta(seconds=30), execution_timeout=timedelta(seconds=5), max_attempts=5,
        initial_backoff=timedelta(seconds=2), multiplier=3.0, max_backoff=timedelta(seconds=20)))
    assert (command.ttl, command.execution_timeout) == (timedelta(seconds=30), timedelta(seconds=5))
    assert (command.retry.max_attempts, command.retry.multiplier) == (5, 3.0)


@pytest.mark.parametrize(("request_", "field", "words"), [
    (reboot(command="selfdestruct"), "command.command", "'selfdestruct' is not a command of the device's template "
                                                        "(its commands: reboot)"),
    (reboot(command=""), "command.command", "is required"),
    (reboot(command="Bad-Name"), "command.command", "is not a command name"),
    (reboot(parameters={"delay": 61.0}), "command.parameters.delay", "must be at most 60; got 61"),
    (reboot(parameters={"delay": 1.5}), "command.parameters.delay", "must be integer"),
    (reboot(parameters={"force": True}), "command.parameters.force", "is not a parameter of this command"),
    (reboot(ttl=timedelta(days=30)), "command.ttl", "at most 604800 s"),
    (reboot(delivery_timeout=timedelta(seconds=-1)), "command.delivery_timeout", "must be more than 0 s"),
    (reboot(max_attempts=11), "command.retry_policy.max_attempts", "must be 1 to 10"),
    (reboot(multiplier=0.5), "command.retry_policy.multiplier", "must be at least 1"),
    (reboot(initial_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=5)),
     "command.retry_policy.max_backoff", "must not be shorter than initial_backoff"),
    (reboot(request_id="has space"), "request_id", "must be 1-128 of"),
    (reboot(parameters={"delay": 1.0, "blob": "x" * 20_000}), "command.parameters", "bytes of JSON"),
])
async def test_bad_requests_name_the_field_and_write_nothing(store: FakeCommandsStore, request_: CreateCommand,
                                                            field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await make_handlers(store).create_command(OPS, request_)
    found = {v.field: v.description for v in caught.value.violations}
    assert field in found, found
    assert words in found[field]
    assert store.state.commands == {} and store.events == []


async def test_system_template_commands_and_devices_without_template(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    ping = await handlers.create_command(OPS, CreateCommand(device_id="dev00000000000000002", command="ping"))
    assert ping.command == "ping"
    with pytest.raises(InvalidArgument) as caught:
        await handlers.create_command(OPS, CreateCommand(device_id="dev00000000000000003", command="ping"))
    assert "(its commands: none)" in caught.value.violations[0].description


async def test_unknown_suspended_and_foreign_devices(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    with pytest.raises(NotFound):
        await handlers.create_command(OPS, reboot(device_id="dev00000000000000099"))
    with pytest.raises(NotFound):  # another tenant's device does not exist for us
        await handlers.create_command(OPS, reboot(device_id="dev00000000000000009"))
    with pytest.raises(InvalidArgument):  # acme's template is not globex's to use
        await handlers.create_command(OTHER, reboot(device_id="dev00000000000000008"))
    with pytest.raises(FailedPrecondition) as caught:
        await handlers.create_command(OPS, reboot(device_id="dev00000000000000004"))
    assert caught.value.reason == "DEVICE_NOT_ACTIVE"


async def test_same_key_same_body_returns_the_existing_command(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    first = await handlers.create_command(OPS, reboot(request_id="req-1"))
    again = await handlers.create_command(OPS, reboot(request_id="req-1"))
    assert again.id == first.id and len(store.state.commands) == 1
    assert len(store.events_of("CommandCreated")) == 1


async def test_same_key_different_body_is_already_exists(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    first = await handlers.create_command(OPS, reboot(request_id="req-1"))
    with pytest.raises(AlreadyExists) as caught:
        await handlers.create_command(OPS, reboot(request_id="req-1", parameters={"delay": 6.0}))
    assert caught.value.reason == "REQUEST_ID_REUSED" and first.name in caught.value.message
    assert len(store.state.commands) == 1


async def test_request_ids_are_per_tenant(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    mine = await handlers.create_command(OPS, reboot(request_id="req-1"))
    theirs = await handlers.create_command(OTHER, reboot(request_id="req-1", device_id="dev00000000000000009"))
    assert mine.id != theirs.id


async def test_the_losing_side_of_a_race_on_a_key_gets_the_winner(store: FakeCommandsStore) -> None:
    """The unique index fires (DuplicateRequest) after the lookup found nothing: answered like a repeat."""
    handlers = make_handlers(store)
    winner = await handlers.create_command(OPS, reboot(request_id="race"))
    store.stale_lookups = 1
    loser = await handlers.create_command(OPS, reboot(request_id="race"))
    store.stale_lookups = 1
    with pytest.raises(AlreadyExists):
        await handlers.create_command(OPS, reboot(request_id="race", parameters={}))
    assert loser.id == winner.id and len(store.state.commands) == 1


async def test_get_is_per_device_and_per_tenant(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    command = await handlers.create_command(OPS, reboot())
    assert (await handlers.get_command(OPS, DEVICE, command.id)).id == command.id
    with pytest.raises(NotFound):
        await handlers.get_command(OPS, "dev00000000000000002", command.id)
    with pytest.raises(NotFound):
        await handlers.get_command(OTHER, DEVICE, command.id)
    with pytest.raises(PermissionDenied):
        await handlers.get_command(Principal("root", Role.PLATFORM_ADMIN, None), DEVICE, command.id)


async def test_list_per_device_and_tenant_wide_with_filter_and_pages(store: FakeCommandsStore) -> None:
    clock = FakeClock()
    handlers = make_handlers(store, clock=clock)
    made = []
    for _ in range(5):
        clock.advance(1)
        made.append(await handlers.create_command(OPS, reboot()))
    clock.advance(1)
    ping = await handlers.create_command(OPS, CreateCommand(device_id="dev00000000000000002", command="ping"))
    await handlers.cancel_command(OPS, DEVICE, made[0].id, "")
    await handlers.create_command(OTHER, reboot(device_id="dev00000000000000009"))

    page, token = await handlers.list_commands(OPS, DEVICE, page_size=2)
    seen = [c.id for c in page]
    while token:
        page, token = await handlers.list_commands(OPS, DEVICE, page_size=2, page_token=token)
        seen += [c.id for c in page]
    assert seen == [c.id for c in reversed(made)]  # newest first by default

    everything, _ = await handlers.list_commands(OPS, None)
    assert {c.id for c in everything} == {c.id for c in made} | {ping.id}
    pending, _ = await handlers.list_commands(OPS, None, filter_text='state = PENDING AND command = "reboot"')
    assert {c.id for c in pending} == {c.id for c in made[1:]}
    canceled, _ = await handlers.list_commands(OPS, DEVICE, filter_text="state = COMMAND_STATE_CANCELED")
    assert [c.id for c in canceled] == [made[0].id]
    oldest, _ = await handlers.list_commands(OPS, None, order_by="create_time", page_size=1)
    assert oldest[0].id == made[0].id
    with pytest.raises(InvalidArgument) as caught:
        await handlers.list_commands(OPS, DEVICE, filter_text="colour = red")
    assert caught.value.violations[0].field == "filter"
    with pytest.raises(InvalidArgument):  # a token of another query is refused
        await handlers.list_commands(OPS, None, page_token=(await handlers.list_commands(OPS, DEVICE, page_size=1))[1])


async def test_cancel_records_who_and_why_and_emits_the_transition(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    command = await handlers.create_command(OPS, reboot())
    canceled = await handlers.cancel_command(OPS, DEVICE, command.id, "wrong pump")
    assert canceled.state is CommandState.CANCELED and canceled.finish_time is not None
    assert canceled.last_transition.reason == "canceled by ops@acme: wrong pump"
    assert canceled.version == command.version + 1 and canceled.next_deadline() is None
    [changed] = store.events_of("CommandStateChanged")
    payload = ev.CommandStateChanged()
    assert changed.payload.Unpack(payload)
    assert (payload.previous_state, payload.command.state) == (int(CommandState.PENDING), int(CommandState.CANCELED))
    with pytest.raises(FailedPrecondition) as caught:
        await handlers.cancel_command(OPS, DEVICE, command.id, "again")
    assert caught.value.reason == "COMMAND_FINISHED"
    assert len(store.events_of("CommandStateChanged")) == 1


async def test_wait_returns_when_the_command_finishes(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store, wait_poll_seconds=30)
    command = await handlers.create_command(OPS, reboot())
    waiting = asyncio.create_task(handlers.wait_command(OPS, DEVICE, command.id, timedelta(seconds=20)))
    await asyncio.sleep(0.05)
    assert not waiting.done() and len(store.waiters) == 1
    # the device side finishes it in another unit of work; the commit notifies the waiter
    async with FakeCommandsUnitOfWork(store, Scope.of_tenant("acme")) as uow:
        current = await uow.commands.get(command.id)
        assert current is not None
        now = current.create_time + timedelta(seconds=1)
        done = current.mark_sent(now).complete(ResultStatus.SUCCEEDED, {"ok": True}, "", now)
        await uow.commands.save(done)
        await uow.commit()
    finished = await asyncio.wait_for(waiting, 2)
    assert finished.state is CommandState.SUCCEEDED and len(store.waiters) == 0


async def test_wait_gives_up_after_its_timeout_with_the_current_state(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store, wait_poll_seconds=0.05)
    command = await handlers.create_command(OPS, reboot())
    waited = await handlers.wait_command(OPS, DEVICE, command.id, timedelta(seconds=0.2))
    assert waited.state is CommandState.PENDING and len(store.waiters) == 0


async def test_wait_on_a_finished_command_returns_at_once_and_unknown_is_not_found(store: FakeCommandsStore) -> None:
    handlers = make_handlers(store)
    command = await handlers.create_command(OPS, reboot())
    await handlers.cancel_command(OPS, DEVICE, command.id, "")
    done = await asyncio.wait_for(handlers.wait_command(OPS, DEVICE, command.id, timedelta(seconds=30)), 1)
    assert done.state is CommandState.CANCELED
    with pytest.raises(NotFound):
        await handlers.wait_command(OPS, DEVICE, "0" * 32, timedelta(seconds=1))
