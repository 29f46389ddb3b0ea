"""Telemetry ingest throughput and publish-to-queryable latency, against a raw baseline, in one run.

(a) raw: publishers -> JetStream (work-queue stream) -> one consumer that COPYs each batch into a bare
    table and acks -- the floor any ingest on this machine pays.
(b) Muster: the same publishers on the device subjects -> MUSTER_TELEMETRY -> the ingest service
    (parse, projection, normalisation, validation, rate limit, staged COPY with dedup, latest values).
Publishers wait for every PubAck (QoS 1 semantics). Until the device edge's MQTT path is benchmarked,
they publish as a platform NATS user on the device subjects (said in the output).

    .venv/bin/python bench/ingest.py [--endpoints run/endpoints.json] [--duration 20] [--rate 12000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import grpc
import nats

from bench._ingest_parts import (
    MUSTER_PREFIX,
    RAW_PREFIX,
    RAW_TABLE,
    ensure_raw_stream,
    ensure_raw_table,
    probe_latencies,
    start_publisher,
    start_raw_consumer,
)
from bench._load import format_table, percentile
from bench._registry_config import bearer
from bench._registry_fixture import seed
from bench._registry_platform import started_platform
from muster.ingest.v1 import telemetry_service_pb2 as tel
from muster.ingest.v1 import telemetry_service_pb2_grpc as tel_grpc

ROWS_PER_MESSAGE = 3  # the payload carries three metrics


def nats_url(endpoints: dict[str, Any], secrets: dict[str, Any]) -> str:
    host = str(endpoints["nats"]).removeprefix("nats://")
    return f"nats://muster_ingest:{secrets['nats']['services']['ingest']}@{host}"


def owner_dsn(endpoints: dict[str, Any], secrets: dict[str, Any]) -> str:
    return f"postgresql://muster_owner:{secrets['postgres']['owner']}@{endpoints['postgres']}/muster"


async def count_raw(conn: Any) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {RAW_TABLE} WHERE subject NOT LIKE '%.probe.%'"))  # noqa: S608


async def count_muster(conn: Any, tenant: str, probe_device: str) -> int:
    async with conn.transaction():
        await conn.execute("SELECT set_config('muster.platform', 'on', true)")
        rows = await conn.fetchval("SELECT count(*) FROM ingest.telemetry WHERE tenant_id = $1 AND device_id <> $2",
                                   tenant, probe_device)
    return int(rows) // ROWS_PER_MESSAGE


async def run_scenario(name: str, *, url: str, dsn: str, prefix: str, devices: list[str], rate: float,
                       duration: float, count: Any, probe: Any, visible: Any) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    before = await count(conn)
    publisher, results = start_publisher(url, prefix, devices, rate=rate, duration=duration)
    started = time.monotonic()
    latencies = await probe_latencies(probe, visible, until=started + duration)
    stored_in_window = await count(conn) - before
    window = time.monotonic() - started
    published = await asyncio.to_thread(results.recv)
    publisher.join(10)
    deadline = time.monotonic() + 120
    while (stored := await count(conn) - before) < published["acked"] and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # polling the database is the point: "stored" means queryable there
    drained = time.monotonic() - started
    await conn.close()
    latencies.sort()
    return {
        "scenario": name, "published_per_s": published["acked"] / published["seconds"],
        "stored_per_s": stored_in_window / window, "overall_per_s": stored / drained,
        "acked": int(published["acked"]), "failed": int(published["failed"]), "stored": stored,
        "lost": int(published["acked"]) - stored, "p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else None, "probes": len(latencies),
    }


async def bench(endpoints: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    secrets = json.loads((Path(endpoints["data_dir"]) / "secrets.json").read_text())
    url, dsn = nats_url(endpoints, secrets), owner_dsn(endpoints, secrets)
    fixture = await seed(endpoints["grpc"]["registry"], endpoints["admin_token"], args.devices + 1)
    devices, probe_device = list(fixture.device_ids[1:]), fixture.device_ids[0]
    nc = await nats.connect(url)
    js = nc.jetstream()
    rows: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(endpoints["grpc"]["ingest"]) as channel:
        stub = tel_grpc.TelemetryServiceStub(channel)
        latest = tel.ListLatestTelemetryRequest(device=f"devices/{probe_device}")
        await asyncio.sleep(3)  # the projection learns the devices from the registry's events

        if not args.skip_raw:
            await ensure_raw_stream(url)
            await ensure_raw_table(dsn)
            consumer = start_raw_consumer(url, dsn, seconds=args.duration + 130)
            probe_conn = await asyncpg.connect(dsn)
            raw_subject = f"{RAW_PREFIX}.probe.telemetry"

            async def raw_probe(k: int) -> Any:
                return await js.publish(raw_subject, b'{"metrics": {"probe": %d}}' % k)

            async def raw_visible(k: int, ack: Any) -> bool:
                return bool(await probe_conn.fetchval(
                    f"SELECT 1 FROM {RAW_TABLE} WHERE subject = $1 AND stream_seq = $2",  # noqa: S608
                    raw_subject, ack.seq))

            rows.append(await run_scenario("raw: JetStream -> COPY", url=url, dsn=dsn, prefix=RAW_PREFIX,
                                           devices=devices, rate=args.rate, duration=args.duration, count=count_raw,
                                           probe=raw_probe, visible=raw_visible))
            consumer.terminate()
            await probe_conn.close()

        async def muster_probe(k: int) -> Any:
            return await js.publish(f"{MUSTER_PREFIX}.{probe_device}.telemetry", b'{"metrics": {"probe": %d}}' % k)

        async def muster_visible(k: int, ack: Any) -> bool:
            response = await stub.ListLatestTelemetry(latest, metadata=bearer(fixture.token), timeout=5)
            return any(v.metric == "probe" and v.value.number_value == k for v in response.values)

        async def muster_count(conn: Any) -> int:
            return await count_muster(conn, fixture.tenant, probe_device)

        rows.append(await run_scenario("muster ingest", url=url, dsn=dsn, prefix=MUSTER_PREFIX, devices=devices,
                                       rate=args.rate, duration=args.duration, count=muster_count,
                                       probe=muster_probe, visible=muster_visible))
    await nc.close()
    return rows


@contextlib.contextmanager
def platform(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if args.endpoints:
        yield json.loads(Path(args.endpoints).read_text())
        return
    with started_platform() as endpoints:
        yield endpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", help="run/endpoints.json of a running platform (default: start one)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing per scenario")
    parser.add_argument("--rate", type=float, default=12_000.0, help="offered messages/s (both scenarios)")
    parser.add_argument("--devices", type=int, default=1000, help="devices the messages are spread over")
    parser.add_argument("--skip-raw", action="store_true", help="only the Muster scenario")
    args = parser.parse_args()
    with platform(args) as endpoints:
        rows = asyncio.run(bench(endpoints, args))
    print("publishers: nats-py JetStream publish with PubAck (QoS 1 semantics) as a platform NATS user on the "
          "device subjects -- MQTT publishers come with the device edge")
    print(format_table(rows, [("scenario", "scenario"), ("published_per_s", "pub/s"), ("stored_per_s", "stored/s"),
                              ("overall_per_s", "overall/s"), ("acked", "acked"), ("stored", "stored"),
                              ("lost", "lost"), ("failed", "pub failed"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                              ("probes", "probes")]))
    if len(rows) == 2 and rows[0]["stored_per_s"]:
        print(f"ratio muster/raw (stored/s): {rows[1]['stored_per_s'] / rows[0]['stored_per_s']:.2f} "
              "(target >= 0.6; target >= 10000 msg/s, p99 <= 1000 ms)")


if __name__ == "__main__":
    main()
