"""Set-based event application (`BatchApply`) against real PostgreSQL and JetStream: batchable events
are claimed and applied together, once; a failing batch leaves nothing behind and its events are
applied one by one instead; events of other types still go through the one-by-one handler."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import text

from muster.events.v1.event_pb2 import Event
from muster.registry.v1.events_pb2 import SiteCreated, SiteDeleted
from muster.runtime.bus import EventConsumer, OutboxRelay
from muster.runtime.db import Scope
from muster.runtime.event_batches import BatchApply, claim
from muster.runtime.uow import UnitOfWork

from .test_outbox_relay import Env, _committed_effects, _consume_until, _effects_table
from .test_outbox_relay import env as env  # fixture

pytestmark = pytest.mark.platform


async def _commit(env: Env, deleted: int, created: int) -> tuple[list[str], list[str]]:
    """`deleted` SiteDeleted and `created` SiteCreated events in one unit of work, relayed to the stream."""
    async with UnitOfWork(env.db, env.tables, Scope.of_tenant("batch-tenant"), source=env.schema) as uow:
        gone = [uow.emit(SiteDeleted(name=f"sites/d{i}"), subject=f"sites/d{i}").id for i in range(deleted)]
        made = [uow.emit(SiteCreated(), subject=f"sites/c{i}").id for i in range(created)]
        await uow.commit()
    await OutboxRelay(env.db, env.tables, env.js, wakeup=asyncio.Event()).relay_once()
    return gone, made


def _consumer(env: Env, durable: str, handler: Any, batch: BatchApply) -> EventConsumer:
    return EventConsumer(env.js, env.db, env.tables, durable=durable, filter_subjects=[f"muster.events.{env.schema}.>"],
                         handler=handler, batch=batch)


async def test_batched_events_are_applied_together_once_and_the_others_one_by_one(env: Env) -> None:
    gone, made = await _commit(env, deleted=40, created=3)
    table = await _effects_table(env)
    batches: list[int] = []
    singles: list[str] = []

    async def apply_many(events: Sequence[Event], conn: Any) -> None:
        batches.append(len(events))
        await conn.execute(text(f"INSERT INTO {table} (event_id, note) SELECT unnest(CAST(:ids AS uuid[])), 'batch'"),
                           {"ids": [e.id for e in events]})

    async def apply_one(event: Event, conn: Any) -> None:
        singles.append(event.type)
        await conn.execute(text(f"INSERT INTO {table} (event_id, note) VALUES (:id, 'single')"),  # noqa: S608
                           {"id": event.id})

    durable = f"batched-{env.schema}"
    consumer = _consumer(env, durable, apply_one, BatchApply(frozenset({"SiteDeleted"}), apply_many))

    async def all_applied() -> bool:
        return len(await _committed_effects(env, table)) >= len(gone) + len(made)

    await _consume_until(env, consumer, durable, all_applied)
    effects = dict(await _committed_effects(env, table))
    assert len(await _committed_effects(env, table)) == len(gone) + len(made)  # nothing twice
    assert {effects[i] for i in gone} == {"batch"} and {effects[i] for i in made} == {"single"}
    assert singles == ["SiteCreated"] * 3
    assert max(batches) > 1  # applied together, not one statement per event
    # A redelivery after a lost ack finds the batched events claimed.
    assert await consumer.apply(Event(id=gone[0], type="SiteDeleted", source=env.schema)) is False


async def test_a_failing_batch_keeps_nothing_and_its_events_are_applied_one_by_one(env: Env) -> None:
    gone, _ = await _commit(env, deleted=12, created=0)
    table = await _effects_table(env)

    async def broken_batch(events: Sequence[Event], conn: Any) -> None:
        await conn.execute(text(f"INSERT INTO {table} (event_id, note) SELECT unnest(CAST(:ids AS uuid[])), 'batch'"),
                           {"ids": [e.id for e in events]})
        raise ValueError("one of these events is bad")

    async def apply_one(event: Event, conn: Any) -> None:
        await conn.execute(text(f"INSERT INTO {table} (event_id, note) VALUES (:id, 'single')"),  # noqa: S608
                           {"id": event.id})

    durable = f"fallback-{env.schema}"
    consumer = _consumer(env, durable, apply_one, BatchApply(frozenset({"SiteDeleted"}), broken_batch))

    async def all_applied() -> bool:
        return len(await _committed_effects(env, table)) >= len(gone)

    await _consume_until(env, consumer, durable, all_applied)
    effects = await _committed_effects(env, table)
    assert sorted(event_id for event_id, _ in effects) == sorted(gone)  # the batch's writes and claims rolled back
    assert {note for _, note in effects} == {"single"}


async def test_claim_returns_each_new_event_once(env: Env) -> None:
    first, second = (Event(id=str(uuid.uuid4()), type="SiteDeleted") for _ in range(2))
    async with env.db.transaction(Scope.platform_wide()) as conn:
        assert await claim(conn, env.tables, "claim-test", [first, first, second]) == [first, second]
        assert await claim(conn, env.tables, "claim-test", [second]) == []
        assert await claim(conn, env.tables, "other-consumer", [second]) == [second]
