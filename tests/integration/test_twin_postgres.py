"""The twin context against the real PostgreSQL, as the twin's own role: the registry projection
(create, delete with tombstone, a late create stays dead), row-level security between tenants, desired
writes with revisions, device reports merged by the inbox with redeliveries ignored, the pending pushes,
and the migrations matching the tables (`alembic check`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from helpers import PlatformLike, owner_db_url, secrets

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as rev
from muster.registry.v1 import resources_pb2 as rpb
from muster.runtime.auth import Principal, Role
from muster.runtime.db import Database, Scope, create_engine
from muster.runtime.device_inbox import DeviceMessage, UnknownDevices
from muster.runtime.errors import NotFound
from muster.runtime.events import new_event
from muster.runtime.pagination import PageTokens
from services.twin.documents import Limits
from services.twin.handlers import TwinHandlers, UpdateDesired
from services.twin.inbox import TwinInbox
from services.twin.projection import apply_device_events, apply_event
from services.twin.repository import TwinRepository
from services.twin.unit_of_work import unit_of_work_factory

pytestmark = pytest.mark.platform

NOW = datetime.now(UTC).replace(microsecond=0)


def twin_db_url(platform: PlatformLike) -> str:
    password = secrets(platform)["postgres"]["services"]["twin"]
    return f"postgresql+asyncpg://muster_twin:{password}@{platform.endpoints['postgres']}/muster"


@pytest.fixture(scope="module")
async def db(platform: PlatformLike) -> AsyncIterator[Database]:
    database = Database(create_engine(twin_db_url(platform), pool_size=4))
    yield database
    await database.close()


async def _project(db: Database, tenant: str, device_id: str, *, deleted: bool = False,
                   at: datetime = NOW) -> None:
    payload = rev.DeviceDeleted(name=f"devices/{device_id}") if deleted else rev.DeviceCreated(
        device=rpb.Device(name=f"devices/{device_id}"))
    event = new_event(payload, source="registry", tenant=tenant, subject=f"devices/{device_id}", time=at)
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_event(event, conn)


async def _device(db: Database) -> tuple[str, str]:
    tenant, device_id = f"tw-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:20]
    await _project(db, tenant, device_id)
    return tenant, device_id


def _handlers(db: Database) -> TwinHandlers:
    return TwinHandlers(unit_of_work_factory(db, asyncio.Event()), PageTokens(b"integration-page-secret-0123"),
                        Limits())


async def test_projection_creates_deletes_and_a_late_create_stays_dead(db: Database) -> None:
    tenant, device_id = await _device(db)
    principal = Principal("ops", Role.VIEWER, tenant)
    assert (await _handlers(db).get_twin(principal, device_id)).desired_version == 0
    await _project(db, tenant, device_id, deleted=True, at=NOW + timedelta(seconds=1))
    await _project(db, tenant, device_id, at=NOW)  # redelivered / late: older than the deletion
    with pytest.raises(NotFound):
        await _handlers(db).get_twin(principal, device_id)


async def test_a_batch_of_device_events_creates_each_live_twin_once(db: Database) -> None:
    tenant = f"tw-{uuid.uuid4().hex[:10]}"
    fresh, buried = uuid.uuid4().hex[:20], uuid.uuid4().hex[:20]
    await _project(db, tenant, buried, deleted=True, at=NOW + timedelta(seconds=5))

    def created(device_id: str, seconds: int) -> Event:
        return new_event(rev.DeviceCreated(device=rpb.Device(name=f"devices/{device_id}")), source="registry",
                         tenant=tenant, subject=f"devices/{device_id}", time=NOW + timedelta(seconds=seconds))

    async with db.transaction(Scope.platform_wide()) as conn:  # a device twice, one from before its deletion
        await apply_device_events([created(fresh, 1), created(fresh, 2), created(buried, 1)], conn)
    principal = Principal("ops", Role.VIEWER, tenant)
    assert (await _handlers(db).get_twin(principal, fresh)).desired_version == 0
    with pytest.raises(NotFound):
        await _handlers(db).get_twin(principal, buried)


async def test_row_level_security_keeps_tenants_apart(db: Database) -> None:
    _, device_id = await _device(db)
    other = Principal("ops", Role.OPERATOR, f"tw-{uuid.uuid4().hex[:10]}")
    with pytest.raises(NotFound):
        await _handlers(db).update_desired(other, UpdateDesired(device_id, {"a": 1}, force=True))
    async with db.transaction(Scope.of_tenant(other.tenant or "")) as conn:
        assert await TwinRepository(conn).get(device_id) is None


async def test_desired_revisions_reports_and_pending_pushes(db: Database) -> None:
    tenant, device_id = await _device(db)
    operator = Principal("ops", Role.OPERATOR, tenant)
    handlers = _handlers(db)
    twin = await handlers.update_desired(operator, UpdateDesired(device_id, {"fan": {"speed": 5}}, force=True))
    twin = await handlers.update_desired(operator, UpdateDesired(device_id, {"mode": "eco"}, etag=twin.etag))
    revisions, _ = await handlers.list_revisions(operator, device_id, size=10, token="")
    assert [r.revision for r in revisions] == [2, 1] and revisions[1].desired == {"fan": {"speed": 5}}

    async with db.transaction(Scope.platform_wide()) as conn:
        pending = {t.device_id: t.desired_version for t in await TwinRepository(conn).pending_pushes(10_000)}
        assert pending[device_id] == 2
        await TwinRepository(conn).mark_pushed({device_id: 2})
        assert device_id not in {t.device_id for t in await TwinRepository(conn).pending_pushes(10_000)}

    async def answer(_device_id: str, _levels: str, _payload: bytes) -> None:
        return None

    inbox = TwinInbox(unit_of_work_factory(db, asyncio.Event()), answer, Limits(),
                      unknown=UnknownDevices(timedelta(minutes=5)))
    topic = f"muster/v1/devices/{device_id}/twin/reported"

    def report(seq: int, state: dict[str, object]) -> DeviceMessage:
        return DeviceMessage(device_id, topic, orjson.dumps({"state": state}), seq, NOW)

    await inbox.handle([report(101, {"fan": {"speed": 5}}), report(103, {"mode": "eco"})])
    await inbox.handle([report(103, {"mode": "eco"}), report(100, {"mode": "boost", "fan": None})])  # late
    after = await handlers.get_twin(operator, device_id)
    assert after.reported == {"fan": {"speed": 5}, "mode": "eco"} and after.reported_version == 2
    assert after.delta().in_sync and after.in_sync


async def test_migrations_match_the_tables(platform: PlatformLike) -> None:
    env = {**os.environ, "MUSTER_MIGRATION_URL": owner_db_url(platform), "MUSTER_SERVICE_ROLE": "muster_twin"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "muster.runtime.migrations", "check", "--service", "twin"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
