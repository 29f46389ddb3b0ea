"""Reading a capture stream through one durable push consumer shared by every ingest replica
(a deliver group), in batches: process, write in one transaction, and only then ack.

A crash before the commit leaves the batch unacked (JetStream redelivers it after `ack_wait`); a
crash between commit and ack redelivers rows the primary key already holds (skipped). Acks are
individual (explicit policy) but fire-and-forget publishes, so a batch of acks costs one flush; the
server never has more than `max_ack_pending` messages out, which also bounds the local buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from muster.runtime.db import is_transient
from services.ingest.capture import CaptureStream, device_of, ensure_stream, errors_subject, mqtt_topic
from services.ingest.metrics import IngestMetrics
from services.ingest.processing import DeviceError, Inbound, Outcome

log = structlog.get_logger(__name__)

RETRY_DELAY_SECONDS = 2.0


@dataclass(frozen=True)
class Handled:
    """What a batch handler did: the processing outcome and how many rows were new."""

    outcome: Outcome[Any]
    new_rows: int


BatchHandler = Callable[[Sequence[Inbound]], Awaitable[Handled]]


@dataclass(frozen=True)
class ConsumerSettings:
    durable: str
    deliver_group: str
    batch_max_messages: int
    batch_max_wait_seconds: float
    max_ack_pending: int
    ack_wait_seconds: float
    batches_in_flight: int = 2


_V1_ACK_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>


def inbound(msg: Msg) -> Inbound | None:
    """The message as the pipeline sees it. The ack subject is parsed here rather than through
    `msg.metadata` (which builds several objects per message: a sixth of the hot path)."""
    device = device_of(msg.subject)
    if device is None:
        return None
    tokens = msg.reply.split(".")
    at = 2 if len(tokens) == _V1_ACK_TOKENS else 4  # v2 adds <domain>.<account hash> after $JS.ACK
    received = datetime.fromtimestamp(int(tokens[at + 5]) / 1e9, UTC)
    return Inbound(device_id=device, topic=mqtt_topic(msg.subject), data=msg.data, stream_seq=int(tokens[at + 3]),
                   received=received, deliveries=int(tokens[at + 2]))


class StreamConsumer:
    def __init__(self, nc: NATS, js: JetStreamContext, stream: CaptureStream, handler: BatchHandler,
                 settings: ConsumerSettings, metrics: IngestMetrics) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self._handler = handler
        self._settings = settings
        self._metrics = metrics
        self._buffer: list[Msg] = []
        self._full = asyncio.Event()
        self._arrived = asyncio.Event()

    def consumer_config(self) -> ConsumerConfig:
        s = self._settings
        return ConsumerConfig(durable_name=s.durable, deliver_group=s.deliver_group, ack_policy=AckPolicy.EXPLICIT,
                              deliver_policy=DeliverPolicy.ALL, ack_wait=s.ack_wait_seconds, max_deliver=-1,
                              max_ack_pending=s.max_ack_pending, filter_subject=self._stream.subject)

    async def _on_message(self, msg: Msg) -> None:
        self._buffer.append(msg)
        self._arrived.set()
        if len(self._buffer) >= self._settings.batch_max_messages:
            self._full.set()

    async def run(self) -> None:
        await ensure_stream(self._js, self._stream)
        limit = self._settings.max_ack_pending * 2
        sub = await self._js.subscribe(
            self._stream.subject, queue=self._settings.deliver_group, durable=self._settings.durable,
            stream=self._stream.name, config=self.consumer_config(), manual_ack=True, cb=self._on_message,
            pending_msgs_limit=limit, pending_bytes_limit=limit * 70 * 1024)
        log.info("consumer_started", stream=self._stream.name, durable=self._settings.durable)
        # Batches overlap: while one is written (PostgreSQL's CPU), the next is parsed (ours). Order
        # between batches does not matter: rows are keyed, latest values only move forward.
        slots = asyncio.Semaphore(self._settings.batches_in_flight)
        running: set[asyncio.Task[None]] = set()

        async def handle(batch: list[Msg]) -> None:
            try:
                await self._handle(batch)
            except Exception:  # e.g. NATS gone while acking: the unacked messages come back later
                log.exception("batch_finish_failed", stream=self._stream.name, messages=len(batch))
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()
                task = asyncio.create_task(handle(await self._next_batch()))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _next_batch(self) -> list[Msg]:
        await self._arrived.wait()
        if len(self._buffer) < self._settings.batch_max_messages:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._settings.batch_max_wait_seconds)
        batch = self._buffer[:self._settings.batch_max_messages]
        del self._buffer[:len(batch)]
        if len(self._buffer) < self._settings.batch_max_messages:
            self._full.clear()
        if not self._buffer:
            self._arrived.clear()
        return batch

    async def _handle(self, msgs: list[Msg]) -> None:
        started = time.perf_counter()
        name = self._stream.name
        parsed = [(msg, inbound(msg)) for msg in msgs]
        for msg, item in parsed:
            if item is None:  # cannot happen with this stream's subjects; never redeliver it forever
                await msg.term()
        batch = [(msg, item) for msg, item in parsed if item is not None]
        try:
            handled = await self._handler([item for _, item in batch])
        except Exception as exc:
            self._metrics.write_failures.labels(name).inc()
            if is_transient(exc) or isinstance(exc, OSError | TimeoutError):
                log.warning("batch_failed_retrying", stream=name, messages=len(batch), error=repr(exc))
            else:
                log.exception("batch_failed", stream=name, messages=len(batch))
            for msg, _ in batch:
                await msg.nak(delay=RETRY_DELAY_SECONDS)
            await asyncio.sleep(RETRY_DELAY_SECONDS / 2)
            return
        await self._finish(batch, handled, started)

    async def _finish(self, batch: list[tuple[Msg, Inbound]], handled: Handled, started: float) -> None:
        name, outcome = self._stream.name, handled.outcome
        retry = set(outcome.retry)
        for position, (msg, _) in enumerate(batch):
            if position in retry:
                await msg.nak(delay=RETRY_DELAY_SECONDS)
            else:
                await msg.ack()
        for error in outcome.errors:
            await self._publish_error(error)
        now = datetime.now(UTC)
        for _, item in batch[-1:]:
            self._metrics.lag_seconds.labels(name).observe(max(0.0, (now - item.received).total_seconds()))
        self._metrics.messages.labels(name, "acked").inc(len(batch) - len(retry))
        if retry:
            self._metrics.messages.labels(name, "retried").inc(len(retry))
        if outcome.provisional:
            self._metrics.messages.labels(name, "provisional").inc(outcome.provisional)
        for reason, count in outcome.rejected.items():
            self._metrics.rejections.labels(name, reason).inc(count)
        self._metrics.rows.labels(name, "new").inc(handled.new_rows)
        self._metrics.rows.labels(name, "duplicate").inc(len(outcome.rows) - handled.new_rows)
        self._metrics.batch_seconds.labels(name).observe(time.perf_counter() - started)

    async def _publish_error(self, error: DeviceError) -> None:
        log.info("device_input_refused", device=error.device_id, topic=error.topic, code=error.code,
                 message=error.message)
        payload = orjson.dumps({"topic": error.topic, "code": error.code, "message": error.message})
        await self._nc.publish(errors_subject(error.device_id), payload)
