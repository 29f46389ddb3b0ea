"""The moving parts of bench/ingest.py: the publisher process, the raw baseline consumer process, and
the publish-to-queryable probes. Each process runs its own event loop (2 cores: the publisher must not
steal the measuring loop's time)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import asyncpg
import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw.devices"
RAW_TABLE = "bench.raw_telemetry"
MUSTER_PREFIX = "muster.v1.devices"


def payload(i: int) -> bytes:
    """A realistic small reading: three metrics and a timestamp (~90 bytes)."""
    return orjson.dumps({"ts": int(time.time() * 1000),
                         "metrics": {"temp": 20.0 + (i % 100) / 10, "humidity": 40 + i % 20, "on": i % 2 == 0}})


async def _publish(url: str, prefix: str, devices: list[str], rate: float, duration: float, window: int,
                   connections: int) -> dict[str, float]:
    """QoS1-like: every message is a JetStream publish whose PubAck comes back on a reply subject; at
    most `window` unacknowledged per connection. (Core publish + one ack subscription: js.publish's
    per-call request machinery would make the publisher, not the system, the bottleneck.)"""
    clients = [await nats.connect(url, pending_size=64 * 1024 * 1024) for _ in range(connections)]
    totals = {"sent": 0, "acked": 0, "failed": 0}
    start = time.monotonic()
    end = start + duration

    async def worker(nc: Any, offset: int) -> None:
        state = {"acked": 0, "failed": 0}
        room = asyncio.Event()
        inbox = nc.new_inbox()

        async def on_ack(msg: Any) -> None:
            state["failed" if b'"error"' in msg.data else "acked"] += 1
            room.set()

        await nc.subscribe(f"{inbox}.*", cb=on_ack, pending_msgs_limit=1_000_000)
        per_connection = rate / connections
        sent = 0
        while (now := time.monotonic()) < end:
            if sent >= (now - start) * per_connection:
                await asyncio.sleep(0.002)
                continue
            if sent - state["acked"] - state["failed"] >= window:
                room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(room.wait(), 1.0)
                continue
            i = offset + sent
            await nc.publish(f"{prefix}.{devices[i % len(devices)]}.telemetry", payload(i), reply=f"{inbox}.{i}")
            sent += 1
        deadline = time.monotonic() + 30
        while sent > state["acked"] + state["failed"] and time.monotonic() < deadline:
            await nc.flush()
            await asyncio.sleep(0.05)
        totals["sent"] += sent
        totals["acked"] += state["acked"]
        totals["failed"] += state["failed"]

    await asyncio.gather(*(worker(nc, n * 7919) for n, nc in enumerate(clients)))
    elapsed = time.monotonic() - start
    for nc in clients:
        await nc.close()
    return {**totals, "seconds": elapsed}


def _publisher_main(conn: Connection, args: tuple[Any, ...]) -> None:
    conn.send(asyncio.run(_publish(*args)))


def start_publisher(url: str, prefix: str, devices: list[str], *, rate: float, duration: float,
                    window: int = 2000, connections: int = 2) -> tuple[Any, Connection]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_publisher_main, args=(child, (url, prefix, devices, rate, duration, window,
                                                                connections)), daemon=True)
    process.start()
    return process, parent


async def ensure_raw_stream(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream(RAW_STREAM)
    await js.add_stream(StreamConfig(name=RAW_STREAM, subjects=[f"{RAW_PREFIX}.*.telemetry"],
                                     retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                                     discard=DiscardPolicy.NEW, max_bytes=4 * 1024 ** 3))
    await nc.close()


async def ensure_raw_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
    await conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    await conn.execute(f"CREATE TABLE {RAW_TABLE} (subject text, stream_seq bigint, received timestamptz, "
                       "payload bytea)")
    await conn.close()


async def _raw_consume(url: str, dsn: str, batch_max: int, stop_after: float, stream: str, subject: str) -> None:
    """The baseline: durable push consumer, batches, COPY into a bare table, then ack -- nothing else."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    buffer: list[Any] = []
    arrived = asyncio.Event()

    async def on_message(msg: Any) -> None:
        buffer.append(msg)
        arrived.set()

    await js.subscribe(subject, queue="raw", durable="raw", stream=stream, manual_ack=True,
                       cb=on_message, pending_msgs_limit=100_000, pending_bytes_limit=512 * 1024 ** 2,
                       config=ConsumerConfig(durable_name="raw", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000,
                                             ack_wait=30, deliver_group="raw"))
    end = time.monotonic() + stop_after
    while time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), 0.2)
        await asyncio.sleep(0.02)
        batch = buffer[:batch_max]
        del buffer[:len(batch)]
        if not buffer:
            arrived.clear()
        if not batch:
            continue
        records = [(m.subject, m.metadata.sequence.stream, m.metadata.timestamp.astimezone(UTC), m.data) for m in batch]
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("raw_telemetry", schema_name="bench", records=records,
                                             columns=("subject", "stream_seq", "received", "payload"))
        for m in batch:
            await m.ack()
    await nc.close()
    await pool.close()


def _raw_main(args: tuple[Any, ...]) -> None:
    asyncio.run(_raw_consume(*args))


def start_raw_consumer(url: str, dsn: str, *, seconds: float, batch_max: int = 2000, stream: str = RAW_STREAM,
                       subject: str = f"{RAW_PREFIX}.*.telemetry") -> Any:
    """`stream`/`subject`: the bench's own BENCH_RAW (nats publishers), or MUSTER_TELEMETRY on a platform
    started without ingest (MQTT publishers: device topics are fixed by their permissions)."""
    process = multiprocessing.get_context("spawn").Process(
        target=_raw_main, args=((url, dsn, batch_max, seconds, stream, subject),), daemon=True)
    process.start()
    return process


async def probe_latencies(publish: Callable[[int], Awaitable[Any]], visible: Callable[[int, Any], Awaitable[bool]],
                          *, until: float, interval: float = 0.2, give_up: float = 10.0) -> list[float]:
    """Publish probe k, poll until it is visible (queryable), record the time; repeat until `until`."""
    latencies: list[float] = []
    k = 0
    while time.monotonic() < until:
        k += 1
        started = time.monotonic()
        ack = await publish(k)
        while time.monotonic() - started < give_up:
            if await visible(k, ack):
                latencies.append(time.monotonic() - started)
                break
            await asyncio.sleep(0.02)  # polling harder would steal the CPU being measured
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    return latencies


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
