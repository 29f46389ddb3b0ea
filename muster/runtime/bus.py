"""NATS JetStream plumbing: connection, the events stream, the outbox relay and idempotent consumers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from sqlalchemy import ARRAY, BigInteger, Row, any_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.runtime.db import Database, Scope, is_transient
from muster.runtime.event_batches import BatchApply, claim
from muster.runtime.events import EVENT_SUBJECT_PREFIX
from muster.runtime.outbox import OutboxTables

log = structlog.get_logger(__name__)

EVENTS_STREAM = "MUSTER_EVENTS"
EVENTS_MAX_AGE_SECONDS = 7 * 24 * 3600
DUPLICATE_WINDOW_SECONDS = 600  # JetStream drops a re-published event id seen within this window


async def connect(url: str, *, name: str) -> NATS:
    """A connection that reconnects forever: a NATS restart must not kill a service."""

    async def _disconnected() -> None:
        log.warning("nats_disconnected")

    async def _reconnected() -> None:
        log.info("nats_reconnected")

    async def _error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              connect_timeout=5, allow_reconnect=True,
                              disconnected_cb=_disconnected, reconnected_cb=_reconnected,
                              error_cb=_error)


async def ensure_events_stream(js: JetStreamContext) -> None:
    """Create (or update to) the stream every service's events land in."""
    config = StreamConfig(
        name=EVENTS_STREAM, subjects=[f"{EVENT_SUBJECT_PREFIX}.>"], retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE, max_age=EVENTS_MAX_AGE_SECONDS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    try:
        await js.stream_info(EVENTS_STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


class OutboxRelay:
    """Publishes committed outbox rows to JetStream, oldest first, then marks them published.

    Rows stay locked (FOR UPDATE SKIP LOCKED) while they are published, so replicas share the
    work without publishing a row twice; if the relay dies after publishing but before marking,
    the rows are published again with the same `Nats-Msg-Id` and JetStream drops the duplicates.
    A batch is published pipelined (`publish_async`: no task or timer per message) and its acks are
    awaited together: a bulk import's tens of thousands of events must not starve the requests
    served by the same event loop.
    """

    def __init__(self, db: Database, tables: OutboxTables, js: JetStreamContext, *,
                 wakeup: asyncio.Event, batch_size: int = 1000, poll_interval: float = 1.0,
                 retention_seconds: float = 24 * 3600, publish_timeout: float = 5.0) -> None:
        self._db = db
        self._tables = tables
        self._js = js
        self._wakeup = wakeup
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retention_seconds = retention_seconds
        self._publish_timeout = publish_timeout

    async def run(self) -> None:
        """Relay until cancelled; transient NATS or PostgreSQL failures are retried with backoff."""
        backoff = 0.2
        while True:
            self._wakeup.clear()  # before reading, so a commit during the read is not missed
            try:
                sent = await self.relay_once()
                backoff = 0.2
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                log.warning("outbox_relay_retry", error=repr(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception as exc:  # a DB outage surfaces as SQLAlchemy/asyncpg errors
                if not is_transient(exc):
                    raise
                log.warning("outbox_relay_retry", error=repr(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval)

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events went out."""
        outbox = self._tables.outbox
        async with self._db.transaction(Scope.platform_wide()) as conn:
            rows = (await conn.execute(
                select(outbox.c.seq, outbox.c.id, outbox.c.nats_subject, outbox.c.payload)
                .where(outbox.c.published_at.is_(None)).order_by(outbox.c.seq)
                .limit(self._batch_size).with_for_update(skip_locked=True)
            )).all()
            if not rows:
                return 0
            acks = await self._publish(rows)
            await conn.execute(update(outbox).where(outbox.c.seq == any_(bindparam(
                "seqs", [r.seq for r in rows], type_=ARRAY(BigInteger)))).values(published_at=func.now()))
        duplicates = sum(1 for ack in acks if ack.duplicate)
        log.debug("outbox_relayed", count=len(rows), duplicates=duplicates)
        return len(rows)

    async def _publish(self, rows: Sequence[Row[Any, Any, Any, Any]]) -> list[PubAck]:
        """Publish every row, then wait for all their acks (at most `publish_timeout`); any failure
        fails the whole batch, which stays unmarked and is published again (deduplicated by id)."""
        pending: list[asyncio.Future[PubAck]] = []
        try:
            for i, row in enumerate(rows, 1):
                pending.append(await self._js.publish_async(row.nats_subject, row.payload,
                                                            headers={"Nats-Msg-Id": str(row.id)}))
                if i % 100 == 0:
                    await asyncio.sleep(0)  # let requests on this loop run between slices of the batch
            async with asyncio.timeout(self._publish_timeout):
                return await asyncio.gather(*pending)
        finally:
            for future in pending:
                future.cancel()  # no-op for the acked; drops the waiting ones from nats-py's table

    async def prune(self, conn: AsyncConnection) -> None:
        """Drop published rows past the retention (they are in JetStream now)."""
        outbox = self._tables.outbox
        await conn.execute(delete(outbox).where(
            outbox.c.published_at < func.now() - text(f"interval '{int(self._retention_seconds)} seconds'")))


EventHandler = Callable[[Event, AsyncConnection], Awaitable[None]]


class EventConsumer:
    """A durable JetStream consumer that applies each event at most once per consumer.

    The event id is recorded in `applied_events` in the same transaction as the handler's writes,
    and the message is acked only after that transaction commits: a crash before the commit
    redelivers the event, a crash after it (before the ack) redelivers an event that is skipped.
    """

    def __init__(self, js: JetStreamContext, db: Database, tables: OutboxTables, *, durable: str,
                 filter_subjects: Sequence[str], handler: EventHandler, batch_size: int = 64,
                 ack_wait_seconds: float = 30.0, batch: BatchApply | None = None) -> None:
        """`batch`: event types this consumer applies set-based (see muster.runtime.event_batches);
        `handler` still applies every other event, and these too when their batch fails."""
        self._batch = batch
        self._js = js
        self._db = db
        self._tables = tables
        self._durable = durable
        self._filter_subjects = list(filter_subjects)
        self._handler = handler
        self._batch_size = batch_size
        self._ack_wait = ack_wait_seconds

    async def run(self) -> None:
        config = ConsumerConfig(durable_name=self._durable, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.ALL, ack_wait=self._ack_wait,
                                max_deliver=-1, filter_subjects=self._filter_subjects)
        if not await self._exists():
            await self._js.add_consumer(EVENTS_STREAM, config)
        sub = await self._js.pull_subscribe_bind(durable=self._durable, stream=EVENTS_STREAM)
        while True:
            try:
                msgs = await sub.fetch(self._batch_size, timeout=1.0)
            except TimeoutError:  # nats-py raises both its own subclass and asyncio's
                continue
            await self._apply_batch(msgs)

    async def _apply_batch(self, msgs: Sequence[Msg]) -> None:
        """Apply a fetched batch in ONE transaction (one commit instead of one per event), each event
        in its own savepoint: an event whose handler fails is rolled back alone and redelivered later,
        the rest commit. Acks go out only after the commit; if the transaction itself fails (e.g. the
        database went away) every message of the batch is redelivered and the applied-ids skip what
        a previous attempt already committed."""
        failed: set[int] = set()  # id() of the messages to redeliver
        try:
            async with self._db.transaction(Scope.platform_wide()) as conn:
                events = [(msg, Event.FromString(msg.data)) for msg in msgs]
                if self._batch is not None and await self._apply_together(conn, events):
                    events = [(msg, event) for msg, event in events if event.type not in self._batch.types]
                for msg, event in events:
                    try:
                        async with conn.begin_nested():
                            await self._apply_in(conn, event)
                    except Exception:
                        log.exception("event_apply_failed", event_id=event.id, type=event.type,
                                      consumer=self._durable)
                        failed.add(id(msg))
        except Exception as exc:
            log.warning("event_batch_failed", consumer=self._durable, events=len(msgs), error=str(exc),
                        transient=is_transient(exc))
            for msg in msgs:
                await msg.nak(delay=1.0)
            return
        for msg in msgs:
            if id(msg) in failed:
                await msg.nak(delay=1.0)
            else:
                await msg.ack()

    async def _apply_together(self, conn: AsyncConnection, events: Sequence[tuple[Msg, Event]]) -> bool:
        """Claim and apply the batchable events in one savepoint; False (nothing kept) if that failed."""
        assert self._batch is not None
        together = [event for _, event in events if event.type in self._batch.types]
        if not together:
            return False
        try:
            async with conn.begin_nested():
                fresh = await claim(conn, self._tables, self._durable, together)
                if fresh:
                    await self._batch.apply(fresh, conn)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("event_batch_apply_failed", consumer=self._durable, events=len(together),
                          hint="applying them one by one")
            return False
        return True

    async def _exists(self) -> bool:
        try:
            await self._js.consumer_info(EVENTS_STREAM, self._durable)
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def apply(self, event: Event) -> bool:
        """Apply one event unless this consumer already did; returns whether it was applied now."""
        async with self._db.transaction(Scope.platform_wide()) as conn:
            return await self._apply_in(conn, event)

    async def _apply_in(self, conn: AsyncConnection, event: Event) -> bool:
        applied = self._tables.applied_events
        inserted = (await conn.execute(
            pg_insert(applied).values(consumer=self._durable, event_id=event.id)
            .on_conflict_do_nothing().returning(applied.c.event_id)
        )).first()
        if inserted is None:
            return False
        await self._handler(event, conn)
        return True
