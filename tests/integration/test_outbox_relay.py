"""The outbox relay against real PostgreSQL and NATS JetStream: every committed event goes out exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from muster.events.v1.event_pb2 import Event
from muster.registry.v1.events_pb2 import SiteDeleted
from muster.runtime.bus import EVENTS_STREAM, EventConsumer, OutboxRelay, ensure_events_stream
from muster.runtime.db import Database, Scope, create_engine, tenant_policy_sql
from muster.runtime.migrations import grant_sql
from muster.runtime.outbox import OutboxTables
from muster.runtime.uow import UnitOfWork

pytestmark = pytest.mark.platform

WORKER = Path(__file__).with_name("relay_worker.py")
SERVICE = "registry"  # borrow the registry's database role and NATS user


@dataclass
class Env:
    schema: str
    tables: OutboxTables
    db: Database
    owner: AsyncEngine
    db_url: str
    nats_url: str
    js: JetStreamContext


def _urls(platform: Any) -> tuple[str, str, str]:
    secrets = json.loads((Path(platform.data_dir) / "secrets.json").read_text())
    pg = platform.endpoints["postgres"]
    owner = f"postgresql+asyncpg://muster_owner:{secrets['postgres']['owner']}@{pg}/muster"
    service = f"postgresql+asyncpg://muster_{SERVICE}:{secrets['postgres']['services'][SERVICE]}@{pg}/muster"
    host = platform.endpoints["nats"].removeprefix("nats://")
    nats_url = f"nats://muster_{SERVICE}:{secrets['nats']['services'][SERVICE]}@{host}"
    return owner, service, nats_url


@pytest.fixture
async def env(platform: Any) -> AsyncIterator[Env]:
    owner_url, service_url, nats_url = _urls(platform)
    schema = f"relaytest_{uuid.uuid4().hex[:8]}"
    tables = OutboxTables(schema)
    owner = create_async_engine(owner_url)
    async with owner.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.run_sync(tables.metadata.create_all)
        for statement in [*tenant_policy_sql(schema, "outbox"), *grant_sql(schema, f"muster_{SERVICE}")]:
            await conn.execute(text(statement))
    db = Database(create_engine(service_url, pool_size=4))
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_events_stream(js)
    yield Env(schema, tables, db, owner, service_url, nats_url, js)
    await nc.close()
    await db.close()
    async with owner.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    await owner.dispose()


async def _commit_events(env: Env, count: int, tenant: str = "relay-tenant") -> list[str]:
    """Commit `count` events through a unit of work, as a handler would, with no relay running."""
    ids: list[str] = []
    for start in range(0, count, 500):
        async with UnitOfWork(env.db, env.tables, Scope.of_tenant(tenant), source=env.schema) as uow:
            for i in range(start, min(start + 500, count)):
                ids.append(uow.emit(SiteDeleted(name=f"sites/s{i}"), subject=f"sites/s{i}").id)
            await uow.commit()
    return ids


async def _published(env: Env) -> int:
    async with env.db.transaction(Scope.platform_wide()) as conn:  # RLS is forced even for the owner
        stmt = select(func.count()).select_from(env.tables.outbox).where(env.tables.outbox.c.published_at.isnot(None))
        return int((await conn.execute(stmt)).scalar_one())


async def _stream_ids(env: Env) -> list[str]:
    """Every event id in the stream for this test's subjects, duplicates included."""
    sub = await env.js.pull_subscribe(f"muster.events.{env.schema}.>", durable=None, stream=EVENTS_STREAM)
    ids: list[str] = []
    while True:
        try:
            msgs = await sub.fetch(500, timeout=1.0)
        except TimeoutError:  # nats-py raises both its own and asyncio's
            break
        for msg in msgs:
            ids.append(Event.FromString(msg.data).id)
            assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == ids[-1]
            await msg.ack()
    await sub.unsubscribe()
    return ids


def _start_worker(env: Env, batch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), env.schema, env.db_url, env.nats_url, str(batch)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


async def _wait_published(env: Env, at_least: int, timeout: float = 60.0) -> int:
    async with asyncio.timeout(timeout):
        while (done := await _published(env)) < at_least:
            await asyncio.sleep(0.02)
    return done


async def test_events_committed_while_no_relay_runs_are_published_once_it_starts(env: Env) -> None:
    ids = await _commit_events(env, 50)
    worker = _start_worker(env, batch=16)
    try:
        await _wait_published(env, len(ids))
    finally:
        worker.terminate()
        worker.wait(10)
    assert sorted(await _stream_ids(env)) == sorted(ids)


async def test_relay_killed_mid_flight_publishes_every_event_exactly_once_after_restart(env: Env) -> None:
    ids = await _commit_events(env, 3000)
    first = _start_worker(env, batch=20)
    try:
        done = await _wait_published(env, 200)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert done < len(ids), "the relay finished before it could be killed; the test proves nothing"
    second = _start_worker(env, batch=200)
    try:
        await _wait_published(env, len(ids))
    finally:
        second.terminate()
        second.wait(10)
    streamed = await _stream_ids(env)
    assert len(streamed) == len(ids)
    assert set(streamed) == set(ids)


class _PublishThenCrash:
    """JetStream that publishes for real, then fails the batch: the relay 'dies' after publishing
    but before it marks the rows, the worst moment for duplicates."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        await self._js.publish(*args, **kwargs)
        raise ConnectionError("relay died after publishing")


async def test_rows_published_but_not_marked_are_published_again_and_deduplicated(env: Env) -> None:
    ids = await _commit_events(env, 10)
    crashing = OutboxRelay(env.db, env.tables, _PublishThenCrash(env.js), wakeup=asyncio.Event())  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await crashing.relay_once()
    assert await _published(env) == 0  # the marking rolled back with the crash
    relay = OutboxRelay(env.db, env.tables, env.js, wakeup=asyncio.Event())
    assert await relay.relay_once() == len(ids)
    assert sorted(await _stream_ids(env)) == sorted(ids)


async def test_a_rolled_back_unit_of_work_publishes_nothing(env: Env) -> None:
    async with UnitOfWork(env.db, env.tables, Scope.of_tenant("relay-tenant"), source=env.schema) as uow:
        uow.emit(SiteDeleted(name="sites/never"), subject="sites/never")
        # leaving without commit() rolls back
    relay = OutboxRelay(env.db, env.tables, env.js, wakeup=asyncio.Event())
    assert await relay.relay_once() == 0
    assert await _stream_ids(env) == []


async def test_consumer_applies_each_event_once_even_when_redelivered(env: Env) -> None:
    ids = await _commit_events(env, 5)
    await OutboxRelay(env.db, env.tables, env.js, wakeup=asyncio.Event()).relay_once()
    applied: list[str] = []
    failed_once: set[str] = set()

    async def handler(event: Event, _conn: Any) -> None:
        if event.id not in failed_once:  # fail each event's first delivery: it must come back
            failed_once.add(event.id)
            raise RuntimeError("transient failure")
        applied.append(event.id)

    durable = f"test-{env.schema}"
    consumer = EventConsumer(env.js, env.db, env.tables, durable=durable,
                             filter_subjects=[f"muster.events.{env.schema}.>"], handler=handler)
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(30):
            while len(applied) < len(ids):
                await asyncio.sleep(0.05)
        # Applying the same event again (a redelivery after a lost ack) changes nothing.
        event = Event(id=ids[0], type="SiteDeleted", tenant="relay-tenant", source=env.schema)
        assert await consumer.apply(event) is False
    finally:
        task.cancel()
        await env.js.delete_consumer(EVENTS_STREAM, durable)
    assert sorted(applied) == sorted(ids)
