"""Reading a capture stream of device messages through one durable push consumer shared by every
replica of a service (a deliver group), in batches: handle, and only then ack.

A crash before the handler's commit leaves the batch unacked (JetStream redelivers it after
`ack_wait`); a crash between commit and ack redelivers messages the handler must recognise (by their
stream sequence, which is the same on every delivery). Acks are individual (explicit policy) but
fire-and-forget publishes, so a batch of acks costs one flush; the server never has more than
`max_ack_pending` messages out, which also bounds the local buffer.

Bad input is the handler's to refuse: it returns a `DeviceError` per refused message, which is logged
with the device id, counted, and answered on the device's `errors` topic; the message is acked, so a
malformed message never comes back. A handler exception means "could not decide now" (e.g. the
database is away): the whole batch is redelivered after a delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Histogram

from muster.runtime.db import is_transient
from muster.runtime.device_topics import CaptureStream, device_of, ensure_stream, errors_subject, mqtt_topic

log = structlog.get_logger(__name__)

RETRY_DELAY_SECONDS = 2.0
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class DeviceMessage(NamedTuple):
    """One captured message (a tuple: the hot path makes millions). `received` is JetStream's store
    time and `stream_seq` its sequence, both the same on every redelivery."""

    device_id: str
    topic: str  # the MQTT topic, e.g. "muster/v1/devices/abc/telemetry"
    data: bytes
    stream_seq: int
    received: datetime
    deliveries: int = 1

    @property
    def levels(self) -> tuple[str, ...]:
        """The topic levels after the device id: ("commands", "c9", "ack")."""
        return tuple(self.topic.split("/")[4:])


@dataclass(frozen=True)
class DeviceError:
    """`{"topic", "code", "message"}` for the device's errors topic."""

    device_id: str
    topic: str
    code: str
    message: str


@dataclass(frozen=True)
class InboxResult:
    """What a handler decided: refusals to answer, and positions in the batch to redeliver later."""

    errors: Sequence[DeviceError] = ()
    retry: Collection[int] = frozenset()


InboxHandler = Callable[[Sequence[DeviceMessage]], Awaitable[InboxResult]]


@dataclass(frozen=True)
class UnknownDevices:
    """What to do with a message from a device a consumer's registry projection does not know.

    The projection learns devices from the registry's events, which can lag behind a device that was
    just registered (after a bulk import of thousands, by minutes): such a message is delivered again
    while it is younger than `grace`, and only then refused on the device's errors topic. Age is
    counted from `received` (JetStream's store time), so it does not depend on how often it came back.
    """

    grace: timedelta
    message: str = "the platform does not know this device (it is not registered, or was deleted)"

    def sort(self, messages: Sequence[DeviceMessage], positions: Iterable[int], now: datetime,
             errors: list[DeviceError], retry: set[int]) -> None:
        """Put each unknown device's message (by position) in `retry`, or its refusal in `errors`."""
        for position in positions:
            message = messages[position]
            if now - message.received < self.grace:
                retry.add(position)
            else:
                errors.append(DeviceError(message.device_id, message.topic, "UNKNOWN_DEVICE", self.message))


@dataclass(frozen=True)
class InboxSettings:
    durable: str  # also the deliver group: every replica joins the same consumer
    filter_subjects: Sequence[str] = field(default_factory=tuple)  # default: all of the stream's subjects
    batch_max_messages: int = 100
    batch_max_wait_seconds: float = 0.01
    max_ack_pending: int = 1000
    ack_wait_seconds: float = 30.0
    batches_in_flight: int = 1  # >1 overlaps batches: only for handlers that do not need order


class InboxMetrics:
    """Collectors shared by every inbox of a process (labelled by stream), on the server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "muster_device_inbox_messages", "Captured device messages handled, by stream and outcome "
            "(acked: handled or refused; retried: delivered again later).", ("stream", "outcome"),
            registry=registry)
        self.refused = Counter(
            "muster_device_inbox_refused", "Messages refused and answered on the device's errors topic, by code.",
            ("stream", "code"), registry=registry)
        self.batch_seconds = Histogram(
            "muster_device_inbox_batch_seconds", "Time to handle and ack one batch.", ("stream",),
            buckets=BATCH_BUCKETS, registry=registry)
        self.lag_seconds = Histogram(
            "muster_device_inbox_lag_seconds", "From capture in JetStream to handled.", ("stream",),
            buckets=LAG_BUCKETS, registry=registry)
        self.failures = Counter(
            "muster_device_inbox_failures", "Batches whose handler failed (their messages are redelivered).",
            ("stream",), registry=registry)


_V1_ACK_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>


def device_message(msg: Msg) -> DeviceMessage | None:
    """The message as handlers see it. The ack subject is parsed here rather than through
    `msg.metadata` (which builds several objects per message: a sixth of ingest's hot path)."""
    device = device_of(msg.subject)
    if device is None:
        return None
    tokens = msg.reply.split(".")
    at = 2 if len(tokens) == _V1_ACK_TOKENS else 4  # v2 adds <domain>.<account hash> after $JS.ACK
    received = datetime.fromtimestamp(int(tokens[at + 5]) / 1e9, UTC)
    return DeviceMessage(device_id=device, topic=mqtt_topic(msg.subject), data=msg.data,
                         stream_seq=int(tokens[at + 3]), received=received, deliveries=int(tokens[at + 2]))


async def answer_error(nc: NATS, error: DeviceError) -> None:
    """Log a refused message and tell the device why, on its `errors` topic (QoS 0: advice only)."""
    log.info("device_input_refused", device=error.device_id, topic=error.topic, code=error.code,
             message=error.message)
    payload = orjson.dumps({"topic": error.topic, "code": error.code, "message": error.message})
    await nc.publish(errors_subject(error.device_id), payload)


class DeviceInbox:
    def __init__(self, nc: NATS, js: JetStreamContext, stream: CaptureStream, handler: InboxHandler,
                 settings: InboxSettings, metrics: InboxMetrics) -> None:
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
        subjects = list(s.filter_subjects) or self._stream.subjects
        single = subjects[0] if len(subjects) == 1 else None
        return ConsumerConfig(durable_name=s.durable, deliver_group=s.durable, ack_policy=AckPolicy.EXPLICIT,
                              deliver_policy=DeliverPolicy.ALL, ack_wait=s.ack_wait_seconds, max_deliver=-1,
                              max_ack_pending=s.max_ack_pending, filter_subject=single,
                              filter_subjects=None if single else subjects)

    async def _on_message(self, msg: Msg) -> None:
        self._buffer.append(msg)
        self._arrived.set()
        if len(self._buffer) >= self._settings.batch_max_messages:
            self._full.set()

    async def run(self) -> None:
        await ensure_stream(self._js, self._stream)
        config = self.consumer_config()
        limit = self._settings.max_ack_pending * 2
        sub = await self._js.subscribe(
            config.filter_subject or "", queue=self._settings.durable, durable=self._settings.durable,
            stream=self._stream.name, config=config, manual_ack=True, cb=self._on_message,
            pending_msgs_limit=limit, pending_bytes_limit=limit * self._stream.max_msg_size // 16)
        log.info("device_inbox_started", stream=self._stream.name, durable=self._settings.durable)
        # With more than one batch in flight, one batch is handled (e.g. written by PostgreSQL) while
        # the next is prepared; only for handlers to which the order between batches does not matter.
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
        parsed = [(msg, device_message(msg)) for msg in msgs]
        for msg, item in parsed:
            if item is None:  # cannot happen with a capture stream's subjects; never redeliver it forever
                await msg.term()
        batch = [(msg, item) for msg, item in parsed if item is not None]
        try:
            result = await self._handler([item for _, item in batch])
        except Exception as exc:
            self._metrics.failures.labels(name).inc()
            if is_transient(exc) or isinstance(exc, OSError | TimeoutError):
                log.warning("batch_failed_retrying", stream=name, messages=len(batch), error=repr(exc))
            else:
                log.exception("batch_failed", stream=name, messages=len(batch))
            for msg, _ in batch:
                await msg.nak(delay=RETRY_DELAY_SECONDS)
            await asyncio.sleep(RETRY_DELAY_SECONDS / 2)
            return
        await self._finish(batch, result, started)

    async def _finish(self, batch: list[tuple[Msg, DeviceMessage]], result: InboxResult, started: float) -> None:
        name = self._stream.name
        retry = set(result.retry)
        for position, (msg, _) in enumerate(batch):
            if position in retry:
                await msg.nak(delay=RETRY_DELAY_SECONDS)
            else:
                await msg.ack()
        for error in result.errors:
            self._metrics.refused.labels(name, error.code).inc()
            await answer_error(self._nc, error)
        now = datetime.now(UTC)
        for _, item in batch[-1:]:
            self._metrics.lag_seconds.labels(name).observe(max(0.0, (now - item.received).total_seconds()))
        self._metrics.messages.labels(name, "acked").inc(len(batch) - len(retry))
        if retry:
            self._metrics.messages.labels(name, "retried").inc(len(retry))
        self._metrics.batch_seconds.labels(name).observe(time.perf_counter() - started)
