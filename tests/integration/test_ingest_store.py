"""The telemetry write path and the projection against the real PostgreSQL, as ingest's own role:
redelivered rows are skipped (exactly once), latest values only move forward, RLS holds, partitions
are created ahead and dropped after the retention."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import PlatformLike, owner_db_url, secrets
from sqlalchemy import insert

from muster.runtime.db import Database, Scope, create_engine
from services.ingest.partitions import PartitionMaintenance, RetentionPolicy
from services.ingest.processing import TelemetryRow
from services.ingest.profiles import ProjectionProfiles
from services.ingest.queries import build_query
from services.ingest.repository import TelemetryRepository
from services.ingest.store import TelemetryStore, create_pool
from services.ingest.tables import (
    edge_devices,
    registry_devices,
    registry_modules,
    registry_templates,
    registry_tombstones,
)

pytestmark = pytest.mark.platform


def ingest_db_url(platform: PlatformLike) -> str:
    password = secrets(platform)["postgres"]["services"]["ingest"]
    return f"postgresql+asyncpg://muster_ingest:{password}@{platform.endpoints['postgres']}/muster"


@pytest.fixture(scope="module")
async def pool(platform: PlatformLike) -> AsyncIterator[Any]:
    created = await create_pool(ingest_db_url(platform), size=2)
    yield created
    await created.close()


@pytest.fixture(scope="module")
async def db(platform: PlatformLike) -> AsyncIterator[Database]:
    database = Database(create_engine(ingest_db_url(platform), pool_size=2))
    yield database
    await database.close()


def rows(device: str, seqs: range, when: datetime, tenant: str = "tenant-a") -> list[TelemetryRow]:
    return [(tenant, device, "temp", when + timedelta(seconds=s), float(s), None, None, s, 0) for s in seqs]


async def count(pool: Any, device: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('muster.platform', 'on', true)")
        return int(await conn.fetchval("SELECT count(*) FROM ingest.telemetry WHERE device_id = $1", device))


async def test_a_redelivered_batch_adds_nothing_and_a_mixed_one_only_its_new_rows(pool: Any) -> None:
    store, device = TelemetryStore(pool), uuid.uuid4().hex[:20]
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    assert await store.write(rows(device, range(0, 100), now)) == 100
    assert await store.write(rows(device, range(0, 100), now)) == 0
    assert await store.write(rows(device, range(50, 150), now)) == 50
    assert await count(pool, device) == 150


async def test_latest_values_only_move_forward(pool: Any, db: Database) -> None:
    store, device = TelemetryStore(pool), uuid.uuid4().hex[:20]
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    await store.write(rows(device, range(10, 20), now))
    await store.write(rows(device, range(0, 5), now))  # older points arriving late
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('muster.platform', 'on', true)")
        latest = await conn.fetchrow("SELECT ts, value_num FROM ingest.latest_telemetry WHERE device_id = $1", device)
    assert (latest["ts"], latest["value_num"]) == (now + timedelta(seconds=19), 19.0)


async def test_rows_and_latest_values_are_visible_only_to_their_tenant(pool: Any, db: Database) -> None:
    store, device = TelemetryStore(pool), uuid.uuid4().hex[:20]
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await store.write(rows(device, range(3), now, tenant="tenant-a"))
    for tenant, expected in (("tenant-a", 3), ("tenant-b", 0)):
        async with db.transaction(Scope.of_tenant(tenant)) as conn:
            repo = TelemetryRepository(conn)
            assert len(await repo.latest(device, None, 10)) == min(expected, 1)
            query = build_query(device_id=device, metrics=[], start=now - timedelta(minutes=1), end=None,
                                page_size=0, page_token="", bucket=None, aggregations=[], now=datetime.now(UTC))
            assert len(await repo.raw(query, None, 100)) == expected


async def test_partitions_are_created_ahead_and_expired_ones_dropped(pool: Any) -> None:
    today = datetime.now(UTC).date()
    old = today - timedelta(days=400)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('muster.platform', 'on', true)")
        await conn.fetchval("SELECT ingest.ensure_daily_partitions('device_logs', $1, $1)", old)
    policy = RetentionPolicy("device_logs", retention_days=30, past_days=7, ahead_days=3, tenant_days={})
    maintenance = PartitionMaintenance(pool, [policy], interval=3600)
    counts = await maintenance.run_once()
    assert counts["dropped"] >= 1
    names = await partitions(pool, "device_logs")
    assert f"device_logs_{old:%Y%m%d}" not in names
    assert {f"device_logs_{today + timedelta(days=d):%Y%m%d}" for d in range(-7, 4)} <= names


async def partitions(pool: Any, parent: str) -> set[str]:
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1", parent)
    return {r["relname"] for r in found}


async def test_the_service_role_cannot_create_partitions_itself(pool: Any) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(Exception, match=r"permission denied|must be owner"):
            await conn.execute("CREATE TABLE ingest.telemetry_29990101 PARTITION OF ingest.telemetry "
                               "FOR VALUES FROM ('2999-01-01') TO ('2999-01-02')")


async def test_profiles_come_from_the_projection(pool: Any, db: Database) -> None:
    device, template = uuid.uuid4().hex[:20], f"tpl-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with db.transaction(Scope.platform_wide()) as conn:
        await conn.execute(insert(registry_templates).values(
            template_id=template, tenant_id="tenant-a", update_time=now,
            metrics={"temperature": {"type": 1, "min": -40, "max": 125}}))
        await conn.execute(insert(registry_devices).values(device_id=device, tenant_id="tenant-a",
                                                           template_id=template, state=2, update_time=now))
        await conn.execute(insert(registry_modules).values(device_id=device, module_id="m1", template_id=None,
                                                           metric_key_map={"port_3_temp": "temperature"},
                                                           update_time=now))
    profile = (await ProjectionProfiles(pool).load([device, "nobody"]))[device]
    assert profile.tenant_id == "tenant-a" and profile.key_map == {"port_3_temp": "temperature"}
    assert not profile.provisional
    assert (profile.metrics["temperature"].min, profile.metrics["temperature"].max) == (-40, 125)


async def test_a_device_only_the_edge_knows_gets_a_provisional_profile_unless_deleted(
        pool: Any, db: Database) -> None:
    fresh, gone, tombstoned = (uuid.uuid4().hex[:20] for _ in range(3))
    now = datetime.now(UTC)
    async with db.transaction(Scope.platform_wide()) as conn:
        for device, deleted in ((fresh, False), (gone, True), (tombstoned, False)):
            await conn.execute(insert(edge_devices).values(device_id=device, tenant_id="tenant-b", state=1,
                                                           deleted=deleted))
        await conn.execute(insert(registry_tombstones).values(device_id=tombstoned, deleted_at=now))
    profiles = await ProjectionProfiles(pool).load([fresh, gone, tombstoned])
    assert set(profiles) == {fresh}
    assert profiles[fresh].provisional and profiles[fresh].tenant_id == "tenant-b"
    assert not profiles[fresh].metrics and not profiles[fresh].key_map


async def test_migrations_match_the_tables_and_partitions_are_not_drift(platform: PlatformLike, pool: Any) -> None:
    """`alembic check` on the ingest schema, with the daily partitions present (created at run time)."""
    assert await partitions(pool, "telemetry"), "no partitions to ignore: the check would prove nothing"
    env = {**os.environ, "MUSTER_MIGRATION_URL": owner_db_url(platform), "MUSTER_SERVICE_ROLE": "muster_ingest"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "muster.runtime.migrations", "check", "--service", "ingest"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

