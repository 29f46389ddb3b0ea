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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nats
import pytest
from helpers import superuser_db_url
from nats.js import JetStreamContext
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from muster.events.v1.event_pb2 import Event
from muster.launcher.nats import binary as nats_binary
from muster.launcher.ports import free_ports
from muster.registry.v1.events_pb2 import SiteDeleted
from muster.runtime.bus import EVENTS_STREAM, EventConsumer, OutboxRelay, connect, ensure_events_stream
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

    async def publish_async(self, *args: Any, **kwargs: Any) -> Any:
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


async def _effects_table(env: Env) -> str:
    """A table a test handler writes its effects to (no key: a second committed effect would show)."""
    table = f"{env.schema}.effects"
    async with env.owner.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {table} (event_id uuid NOT NULL, note text NOT NULL DEFAULT '')"))
        await conn.execute(text(f"GRANT SELECT, INSERT ON {table} TO muster_{SERVICE}"))
    return table


async def _committed_effects(env: Env, table: str) -> list[tuple[str, str]]:
    async with env.owner.connect() as conn:
        rows = await conn.execute(text(f"SELECT event_id::text, note FROM {table}"))  # noqa: S608
        return [(row[0], row[1]) for row in rows]


async def _consume_until(env: Env, consumer: EventConsumer, durable: str, done: Any) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(30):
            while not await done():
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await env.js.delete_consumer(EVENTS_STREAM, durable)


async def test_consumer_applies_each_event_once_even_when_redelivered(env: Env) -> None:
    ids = await _commit_events(env, 5)
    await OutboxRelay(env.db, env.tables, env.js, wakeup=asyncio.Event()).relay_once()
    table = await _effects_table(env)
    failed_once: set[str] = set()

    async def handler(event: Event, conn: Any) -> None:
        await conn.execute(text(f"INSERT INTO {table} (event_id) VALUES (:id)"), {"id": event.id})  # noqa: S608
        if event.id not in failed_once:  # fail each event's first delivery: it must come back
            failed_once.add(event.id)
            raise RuntimeError("transient failure")

    durable = f"test-{env.schema}"
    consumer = EventConsumer(env.js, env.db, env.tables, durable=durable,
                             filter_subjects=[f"muster.events.{env.schema}.>"], handler=handler)

    async def all_applied() -> bool:
        return len(await _committed_effects(env, table)) >= len(ids)

    await _consume_until(env, consumer, durable, all_applied)
    await asyncio.sleep(0.5)  # and nothing is applied a second time
    assert sorted(event_id for event_id, _ in await _committed_effects(env, table)) == sorted(ids)
    # Applying the same event again (a redelivery after a lost ack) changes nothing.
    event = Event(id=ids[0], type="SiteDeleted", tenant="relay-tenant", source=env.schema)
    assert await consumer.apply(event) is False


async def test_a_failing_event_is_rolled_back_alone_while_the_rest_of_its_batch_commits(env: Env) -> None:
    ids = await _commit_events(env, 6)
    await OutboxRelay(env.db, env.tables, env.js, wakeup=asyncio.Event()).relay_once()
    table = await _effects_table(env)
    poisoned = ids[2]
    attempts: dict[str, int] = {}

    async def handler(event: Event, conn: Any) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        note = "failed" if event.id == poisoned and attempts[event.id] <= 2 else "ok"
        await conn.execute(text(f"INSERT INTO {table} (event_id, note) VALUES (:id, :note)"),  # noqa: S608
                           {"id": event.id, "note": note})
        if note == "failed":  # the batch attempt and the one-by-one attempt both fail: redelivered later
            raise RuntimeError("poisoned")

    durable = f"batch-{env.schema}"
    consumer = EventConsumer(env.js, env.db, env.tables, durable=durable,
                             filter_subjects=[f"muster.events.{env.schema}.>"], handler=handler)

    async def all_applied() -> bool:
        return len(await _committed_effects(env, table)) >= len(ids)

    await _consume_until(env, consumer, durable, all_applied)
    await asyncio.sleep(0.5)
    effects = await _committed_effects(env, table)
    assert sorted(e for e, _ in effects) == sorted(ids)  # each committed once, the poisoned one on redelivery
    assert all(note == "ok" for _, note in effects)  # the failed attempts' writes were rolled back
    assert attempts[poisoned] == 3


# --- restarts of NATS and PostgreSQL under a running relay ------------------------------------------

def _start_nats(store: Path, port: int) -> subprocess.Popen[bytes]:
    """A scratch JetStream server of our own, so killing it leaves the shared platform alone."""
    config = store / "nats.conf"
    config.write_text(json.dumps({"server_name": "relay-test", "listen": f"127.0.0.1:{port}",
                                  "jetstream": {"store_dir": str(store / "js")}}))
    return subprocess.Popen([str(nats_binary()), "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _wait_port(port: int) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def test_relay_rides_out_a_nats_restart_without_losing_or_duplicating(env: Env, tmp_path: Path) -> None:
    port = free_ports(1)[0]
    server = _start_nats(tmp_path, port)
    await _wait_port(port)
    nc = await connect(f"nats://127.0.0.1:{port}", name="relay-under-test")
    js = nc.jetstream()
    await ensure_events_stream(js)
    ids = await _commit_events(env, 2000)
    relay = OutboxRelay(env.db, env.tables, js, wakeup=asyncio.Event(), batch_size=20, poll_interval=0.1)
    task = asyncio.create_task(relay.run())
    try:
        done = await _wait_published(env, 200)
        server.kill()  # the broker goes away mid-flight...
        server.wait(10)
        await asyncio.sleep(1.0)
        server = _start_nats(tmp_path, port)  # ...and comes back with its JetStream store
        await _wait_published(env, len(ids))
        assert done < len(ids), "the relay finished before NATS went down; the test proves nothing"
        streamed = await _stream_ids(replace(env, js=js))
    finally:
        task.cancel()
        await nc.close()
        server.terminate()
        server.wait(10)
    assert len(streamed) == len(ids)
    assert set(streamed) == set(ids)


async def test_relay_rides_out_lost_database_connections(env: Env, platform: Any) -> None:
    ids = await _commit_events(env, 2000)
    # The relay gets sessions of its own, so only they are cut (the platform's registry keeps its pool).
    relay_db = Database(create_async_engine(env.db_url, connect_args={
        "server_settings": {"application_name": "relay-under-test"}}))
    relay = OutboxRelay(relay_db, env.tables, env.js, wakeup=asyncio.Event(), batch_size=20, poll_interval=0.1)
    task = asyncio.create_task(relay.run())
    superuser = create_async_engine(superuser_db_url(platform))
    try:
        done = await _wait_published(env, 200)
        async with superuser.connect() as conn:  # what a PostgreSQL restart does to the relay's sessions
            killed = (await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'relay-under-test'"))).scalar_one()
        await _wait_published(env, len(ids))
    finally:
        task.cancel()
        await superuser.dispose()
        await relay_db.close()
    assert killed > 0 and done < len(ids), "nothing was interrupted; the test proves nothing"
    streamed = await _stream_ids(env)
    assert len(streamed) == len(ids)
    assert set(streamed) == set(ids)

