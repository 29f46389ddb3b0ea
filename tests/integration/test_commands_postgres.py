"""The commands context against the real PostgreSQL, as the commands service's own role: row-level
security keeps tenants apart (commands and the projection; system templates readable by all), two
concurrent creates with one idempotency key make one command, the due timer column follows the
domain, a terminal save NOTIFYs the WaitCommand listener at commit (not before, not on rollback), and
the migrations match the tables (`alembic check`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from helpers import PlatformLike, owner_db_url, secrets
from sqlalchemy import select, text

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as rev
from muster.registry.v1 import resources_pb2 as rpb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.auth import Principal, Role
from muster.runtime.db import Database, Scope, create_engine
from muster.runtime.errors import Aborted, AlreadyExists, NotFound
from muster.runtime.events import new_event
from muster.runtime.pagination import PageTokens
from services.commands.creation import CreateCommand
from services.commands.domain import CommandState, ResultStatus, TimerKind
from services.commands.handlers import CommandHandlers
from services.commands.limits import DEFAULT_LIMITS
from services.commands.main import listener_dsn
from services.commands.projection import apply_event
from services.commands.tables import commands
from services.commands.unit_of_work import unit_of_work_factory
from services.commands.waiting import FinishedListener, Waiters

pytestmark = pytest.mark.platform

NOW = datetime.now(UTC).replace(microsecond=0)


def commands_db_url(platform: PlatformLike) -> str:
    password = secrets(platform)["postgres"]["services"]["commands"]
    return f"postgresql+asyncpg://muster_commands:{password}@{platform.endpoints['postgres']}/muster"


@pytest.fixture(scope="module")
async def db(platform: PlatformLike) -> AsyncIterator[Database]:
    database = Database(create_engine(commands_db_url(platform), pool_size=8))
    yield database
    await database.close()


@pytest.fixture(scope="module")
def waiters() -> Waiters:
    return Waiters()


@pytest.fixture
def handlers(db: Database, waiters: Waiters) -> CommandHandlers:
    return CommandHandlers(unit_of_work_factory(db, asyncio.Event()), PageTokens(b"integration-page-secret-0123"),
                           DEFAULT_LIMITS, waiters, wait_poll_seconds=30)


def _event(payload: Message, tenant: str) -> Event:
    return new_event(payload, source="registry", tenant=tenant, subject="x", time=NOW)


async def project(db: Database, tenant: str, *, system: bool = False) -> tuple[str, str]:
    """A template with a `reboot` command (the tenant's, or a system one) and a device using it."""
    template_id, device_id = f"t{uuid.uuid4().hex[:11]}", uuid.uuid4().hex[:20]
    parameters = Struct()
    parameters.update({"type": "object", "properties": {"delay": {"type": "number", "maximum": 60}}})
    template = tpb.DeviceTemplate(name=f"templates/{template_id}",
                                  commands=[tpb.CommandDefinition(name="reboot", parameters=parameters)])
    template.update_time.FromDatetime(NOW)
    device = rpb.Device(name=f"devices/{device_id}", template=f"templates/{template_id}",
                        state=rpb.DEVICE_STATE_ACTIVE)
    device.update_time.FromDatetime(NOW)
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_event(_event(rev.TemplateCreated(template=template), "" if system else tenant), conn)
        await apply_event(_event(rev.DeviceCreated(device=device), tenant), conn)
    return template_id, device_id


def operator(tenant: str) -> Principal:
    return Principal(subject=f"ops@{tenant}", role=Role.OPERATOR, tenant=tenant)


def tenant_id() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def test_tenants_see_only_their_commands_and_devices(db: Database, handlers: CommandHandlers) -> None:
    a, b = tenant_id(), tenant_id()
    _, a_device = await project(db, a)
    _, b_device = await project(db, b)
    mine = await handlers.create_command(operator(a), CreateCommand(device_id=a_device, command="reboot",
                                                                    parameters={"delay": 5.0}))
    listed, _ = await handlers.list_commands(operator(a), None)
    assert [c.id for c in listed] == [mine.id]
    assert (await handlers.list_commands(operator(b), None))[0] == []
    with pytest.raises(NotFound):
        await handlers.get_command(operator(b), a_device, mine.id)
    with pytest.raises(NotFound):  # b cannot even target a's device
        await handlers.create_command(operator(b), CreateCommand(device_id=a_device, command="reboot"))
    async with db.transaction(Scope.of_tenant(b)) as conn:  # raw SQL too: RLS, not the WHERE clause
        assert (await conn.execute(text("SELECT count(*) FROM commands.commands WHERE id = :id"),
                                   {"id": mine.id})).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM commands.registry_devices WHERE device_id = :d"),
                                   {"d": a_device})).scalar_one() == 0
    assert b_device


async def test_system_templates_are_readable_by_every_tenant(db: Database, handlers: CommandHandlers) -> None:
    tenant = tenant_id()
    _, device = await project(db, tenant, system=True)
    created = await handlers.create_command(operator(tenant), CreateCommand(device_id=device, command="reboot"))
    assert created.command == "reboot"


async def test_concurrent_creates_with_one_key_make_one_command(db: Database, handlers: CommandHandlers) -> None:
    tenant = tenant_id()
    _, device = await project(db, tenant)
    request = CreateCommand(device_id=device, command="reboot", parameters={"delay": 1.0}, request_id="race-1")
    results = await asyncio.gather(*(handlers.create_command(operator(tenant), request) for _ in range(6)))
    assert len({c.id for c in results}) == 1
    async with db.transaction(Scope.of_tenant(tenant)) as conn:
        rows = (await conn.execute(select(commands.c.id).where(commands.c.request_id == "race-1"))).all()
    assert len(rows) == 1
    with pytest.raises(AlreadyExists):
        await handlers.create_command(operator(tenant), CreateCommand(
            device_id=device, command="reboot", parameters={"delay": 2.0}, request_id="race-1"))


async def test_the_row_round_trips_and_its_due_timer_follows_the_domain(db: Database,
                                                                       handlers: CommandHandlers) -> None:
    tenant = tenant_id()
    _, device = await project(db, tenant)
    created = await handlers.create_command(operator(tenant), CreateCommand(
        device_id=device, command="reboot", parameters={"delay": 3.0}, ttl=timedelta(minutes=5),
        delivery_timeout=timedelta(hours=1), max_attempts=2, initial_backoff=timedelta(seconds=2), multiplier=1.5))
    now = datetime.now(UTC)  # the running service's timer worker fires what is due: nothing is, for an hour
    uow = unit_of_work_factory(db, asyncio.Event())
    async with uow(Scope.of_tenant(tenant)) as work:
        stored = await work.commands.get(created.id, lock=True)
        assert stored == created
        sent = await work.commands.save(stored.mark_sent(now))
        await work.commit()
    async with db.transaction(Scope.of_tenant(tenant)) as conn:
        row = (await conn.execute(select(commands.c.due_at, commands.c.due_kind, commands.c.version)
                                  .where(commands.c.id == created.id))).one()
    assert (row.due_at, row.due_kind, row.version) == (sent.ack_deadline, TimerKind.ACK.value, 2)
    async with uow(Scope.of_tenant(tenant)) as work:
        stale = await work.commands.get(created.id)
        assert stale is not None
        await work.commands.save(stale.acknowledge(now))
        with pytest.raises(Aborted):  # the same version twice: the second writer lost
            await work.commands.save(stale.acknowledge(now))


async def test_a_terminal_save_wakes_waiters_at_commit_only(platform: PlatformLike, db: Database,
                                                            handlers: CommandHandlers, waiters: Waiters) -> None:
    listener = FinishedListener(listener_dsn(commands_db_url(platform)), waiters)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        tenant = tenant_id()
        _, device = await project(db, tenant)
        created = await handlers.create_command(operator(tenant), CreateCommand(device_id=device, command="reboot"))
        uow = unit_of_work_factory(db, asyncio.Event())
        with waiters.watch(created.id) as finished:
            async with uow(Scope.of_tenant(tenant)) as work:  # rolled back: no wake-up
                current = await work.commands.get(created.id, lock=True)
                assert current is not None
                await work.commands.save(current.cancel("ops", "", NOW))
            await asyncio.sleep(0.3)
            assert not finished.is_set()
            waiting = asyncio.create_task(handlers.wait_command(operator(tenant), device, created.id,
                                                                timedelta(seconds=20)))
            await asyncio.sleep(0.2)
            async with uow(Scope.of_tenant(tenant)) as work:
                current = await work.commands.get(created.id, lock=True)
                assert current is not None
                now = datetime.now(UTC)
                done = current.mark_sent(now).complete(ResultStatus.SUCCEEDED, {"ok": True}, "", now)
                await work.commands.save(done)
                await work.commit()
            started = asyncio.get_running_loop().time()
            result = await asyncio.wait_for(waiting, 5)
            assert result.state is CommandState.SUCCEEDED
            assert asyncio.get_running_loop().time() - started < 2  # woken by NOTIFY, not the 30 s poll
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_migrations_match_the_tables(platform: PlatformLike) -> None:
    env = {**os.environ, "MUSTER_MIGRATION_URL": owner_db_url(platform), "MUSTER_SERVICE_ROLE": "muster_commands"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "muster.runtime.migrations", "check", "--service", "commands"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
