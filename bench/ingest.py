"""Telemetry ingest throughput and publish-to-queryable latency, against a raw baseline, in one run.

(a) raw: publishers -> JetStream (work-queue stream) -> one consumer that COPYs each batch into a bare
    table and acks -- the floor any ingest on this machine pays.
(b) Muster: the same publishers on the device subjects -> MUSTER_TELEMETRY -> the ingest service
    (parse, projection, normalisation, validation, rate limit, staged COPY with dedup, latest values).
--publisher mqtt (default): simulated MQTT devices (QoS 1) registered with RegisterDevice and let in by
the edge's auth callout; the raw phase runs on a platform started without ingest (MUSTER_TELEMETRY read
by the bare consumer), Muster's on a full one. --publisher nats: nats-py with a PubAck per message as a
platform NATS user, raw on the bench's own stream beside ingest.

    .venv/bin/python bench/ingest.py [--publisher mqtt|nats] [--endpoints run/endpoints.json]
        [--duration 20] [--rate 12000] [--devices 1000] [--skip-raw]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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

from bench._ingest_mqtt import MqttProbe, mqtt_address, register_fleet, start_simulator
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
from bench._load import format_table, machine_busy_seconds, percentile, process_cpu_seconds
from bench._registry_config import bearer, log
from bench._registry_fixture import seed
from bench._registry_platform import started_platform
from muster.ingest.v1 import telemetry_service_pb2 as tel
from muster.ingest.v1 import telemetry_service_pb2_grpc as tel_grpc
from muster.runtime.device_topics import ensure_stream
from muster.simulator.device import Credentials
from muster.simulator.metrics import METRICS_PER_MESSAGE
from services.ingest.capture import TELEMETRY

ROWS_PER_MESSAGE = 3  # the nats publisher's payload carries three metrics
RAW_SERVICES = "registry,edge"  # the raw phase's platform: devices register and authenticate, nothing ingests


def nats_url(endpoints: dict[str, Any], secrets: dict[str, Any], service: str = "ingest") -> str:
    """As that service's NATS user (a platform started without ingest has no ingest user)."""
    host = str(endpoints["nats"]).removeprefix("nats://")
    return f"nats://muster_{service}:{secrets['nats']['services'][service]}@{host}"


def owner_dsn(endpoints: dict[str, Any], secrets: dict[str, Any]) -> str:
    return f"postgresql://muster_owner:{secrets['postgres']['owner']}@{endpoints['postgres']}/muster"


async def count_raw(conn: Any, probe_subject: str = f"{RAW_PREFIX}.probe.telemetry") -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {RAW_TABLE} WHERE subject <> $1", probe_subject))  # noqa: S608


async def count_muster(conn: Any, tenant: str, probe_device: str, rows_per_message: int = ROWS_PER_MESSAGE) -> int:
    async with conn.transaction():
        await conn.execute("SELECT set_config('muster.platform', 'on', true)")
        rows = await conn.fetchval("SELECT count(*) FROM ingest.telemetry WHERE tenant_id = $1 AND device_id <> $2",
                                   tenant, probe_device)
    return int(rows) // rows_per_message


class NatsPublisher:
    """bench/_ingest_parts' publisher process: nats-py with PubAck per message, as a platform NATS user."""

    def __init__(self, url: str, prefix: str, devices: list[str], rate: float, duration: float) -> None:
        self._args = (url, prefix, devices)
        self._rate, self._duration = rate, duration
        self.process: Any = None
        self._results: Any = None

    async def begin(self) -> float:
        self.process, self._results = start_publisher(*self._args, rate=self._rate, duration=self._duration)
        return time.monotonic()

    async def result(self) -> dict[str, Any]:
        published: dict[str, Any] = await asyncio.to_thread(self._results.recv)
        self.process.join(10)
        return {"offered": published["sent"], "published": published["sent"], **published}


class SimulatorPublisher:
    """The simulator engine in its own process: real MQTT devices authenticated by the edge, QoS 1."""

    def __init__(self, address: tuple[str, int], devices: list[Credentials], rate: float, duration: float) -> None:
        self._address, self._devices = address, devices
        self._rate, self._duration = rate, duration
        self.process: Any = None
        self._results: Any = None

    async def begin(self) -> float:
        """Returns when the devices are connected and publishing has begun (dated by its first report)."""
        self.process, self._results = start_simulator(self._address, self._devices, rate=self._rate,
                                                      duration=self._duration)
        first = await asyncio.to_thread(self._results.recv)
        return time.monotonic() - float(first["seconds"])

    async def result(self) -> dict[str, Any]:
        while (report := await asyncio.to_thread(self._results.recv)).get("interim"):
            pass
        self.process.join(30)
        return {**report, "failed": report["published"] - report["acked"]}


async def run_scenario(name: str, *, dsn: str, publisher: NatsPublisher | SimulatorPublisher, duration: float,
                       count: Any, probe: Any, visible: Any) -> dict[str, Any]:
    conn = await asyncio.wait_for(asyncpg.connect(dsn), 30)
    before = await count(conn)
    started = await publisher.begin()
    pub_cpu, busy = process_cpu_seconds(publisher.process.pid), machine_busy_seconds()
    latencies = await probe_latencies(probe, visible, until=started + duration)
    stored_in_window = await count(conn) - before
    window = time.monotonic() - started
    pub_cpu, busy = process_cpu_seconds(publisher.process.pid) - pub_cpu, machine_busy_seconds() - busy
    result = asyncio.ensure_future(publisher.result())  # the simulator's shutdown must not count as draining
    stored, last_stored_at, deadline = stored_in_window, time.monotonic(), time.monotonic() + 150
    while not (result.done() and stored >= result.result()["acked"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # polling the database is the point: "stored" means queryable there
        if (now_stored := await count(conn) - before) > stored:
            stored, last_stored_at = now_stored, time.monotonic()
    published = await result
    drained = last_stored_at - started
    await conn.close()
    latencies.sort()
    return {
        "scenario": name, "offered": int(published["offered"]), "published": int(published["published"]),
        "published_per_s": published["acked"] / published["seconds"],
        "stored_per_s": stored_in_window / window, "overall_per_s": stored / drained,
        "acked": int(published["acked"]), "failed": int(published["failed"]), "stored": stored,
        "lost": int(published["acked"]) - stored, "p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else None, "probes": len(latencies),
        "publisher_cpu": round(100 * pub_cpu / window), "machine_cpu": round(100 * busy / window),
        "load1": os.getloadavg()[0],
    }


async def bench_nats(endpoints: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
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

            rows.append(await run_scenario(
                "raw: JetStream -> COPY", dsn=dsn, duration=args.duration, count=count_raw, probe=raw_probe,
                visible=raw_visible, publisher=NatsPublisher(url, RAW_PREFIX, devices, args.rate, args.duration)))
            consumer.terminate()
            await probe_conn.close()

        async def muster_probe(k: int) -> Any:
            return await js.publish(f"{MUSTER_PREFIX}.{probe_device}.telemetry", b'{"metrics": {"probe": %d}}' % k)

        async def muster_visible(k: int, ack: Any) -> bool:
            response = await stub.ListLatestTelemetry(latest, metadata=bearer(fixture.token), timeout=5)
            return any(v.metric == "probe" and v.value.number_value == k for v in response.values)

        async def muster_count(conn: Any) -> int:
            return await count_muster(conn, fixture.tenant, probe_device)

        rows.append(await run_scenario(
            "muster ingest", dsn=dsn, duration=args.duration, count=muster_count, probe=muster_probe,
            visible=muster_visible, publisher=NatsPublisher(url, MUSTER_PREFIX, devices, args.rate, args.duration)))
    await nc.close()
    return rows


async def bench_mqtt(endpoints: dict[str, Any], args: argparse.Namespace, *, raw: bool) -> dict[str, Any]:
    """One scenario with MQTT devices. raw: the platform runs without ingest, MUSTER_TELEMETRY (created
    here with ingest's own config) is read by the bare COPY consumer instead."""
    secrets = json.loads((Path(endpoints["data_dir"]) / "secrets.json").read_text())
    url = nats_url(endpoints, secrets, "ingest" if not raw else "registry")
    dsn = owner_dsn(endpoints, secrets)
    devices = await register_fleet(endpoints["grpc"]["registry"], endpoints["admin_token"], args.devices)
    address = mqtt_address(endpoints)
    probe = MqttProbe(devices.probe)
    await probe.connect(address)  # also: the edge has learnt the devices registered before the probe's
    publisher = SimulatorPublisher(address, devices.devices, args.rate, args.duration)
    probe_subject = f"{MUSTER_PREFIX}.{devices.probe.id}.telemetry"

    async def publish(k: int) -> None:
        await probe.publish(k)

    try:
        if raw:
            nc = await nats.connect(url)
            await ensure_stream(nc.jetstream(), TELEMETRY)
            await nc.close()
            await ensure_raw_table(dsn)
            consumer = start_raw_consumer(url, dsn, seconds=args.duration + 200, stream=TELEMETRY.name,
                                          subject=TELEMETRY.subject)
            probe_conn = await asyncpg.connect(dsn)

            async def raw_visible(k: int, _ack: Any) -> bool:
                return bool(await probe_conn.fetchval(
                    f"SELECT 1 FROM {RAW_TABLE} WHERE subject = $1 AND payload = $2",  # noqa: S608
                    probe_subject, probe.body(k)))

            async def raw_count(conn: Any) -> int:
                return await count_raw(conn, probe_subject)

            try:
                return await run_scenario("raw: MQTT -> JetStream -> COPY", dsn=dsn, publisher=publisher,
                                          duration=args.duration, count=raw_count, probe=publish, visible=raw_visible)
            finally:
                consumer.terminate()
                await probe_conn.close()

        async with grpc.aio.insecure_channel(endpoints["grpc"]["ingest"]) as channel:
            stub = tel_grpc.TelemetryServiceStub(channel)
            latest = tel.ListLatestTelemetryRequest(device=f"devices/{devices.probe.id}")

            async def muster_visible(k: int, _ack: Any) -> bool:
                response = await stub.ListLatestTelemetry(latest, metadata=bearer(devices.token), timeout=5)
                return any(v.metric == "probe" and v.value.number_value == k for v in response.values)

            async def muster_count(conn: Any) -> int:
                return await count_muster(conn, devices.tenant, devices.probe.id, METRICS_PER_MESSAGE)

            return await run_scenario("muster: MQTT -> ingest", dsn=dsn, publisher=publisher, duration=args.duration,
                                      count=muster_count, probe=publish, visible=muster_visible)
    finally:
        await probe.close()


@contextlib.contextmanager
def platform(args: argparse.Namespace, services: str | None = None) -> Iterator[dict[str, Any]]:
    if args.endpoints:
        yield json.loads(Path(args.endpoints).read_text())
        return
    with started_platform(services) as endpoints:
        yield endpoints


def run_mqtt(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Raw on a platform without ingest (registry + edge: devices still register and authenticate), then
    Muster on a full one; each has its own fresh platform, tenant and devices."""
    rows: list[dict[str, Any]] = []
    if args.skip_raw or args.endpoints:
        log("raw baseline skipped" + (": a running platform's ingest consumes MUSTER_TELEMETRY" if args.endpoints
                                      else ""))
    else:
        with platform(args, RAW_SERVICES) as endpoints:
            rows.append(asyncio.run(bench_mqtt(endpoints, args, raw=True)))
    with platform(args) as endpoints:
        rows.append(asyncio.run(bench_mqtt(endpoints, args, raw=False)))
    return rows


PUBLISHERS = {
    "mqtt": (f"MQTT 3.1.1 QoS 1 devices (muster simulator engine in its own process, gmqtt), registered with "
             f"RegisterDevice, authenticated by the edge's auth callout, {METRICS_PER_MESSAGE} metrics per message. "
             f"raw = a platform started with only '{RAW_SERVICES}' (no ingest): MUSTER_TELEMETRY, same config, read by "
             "a bare COPY consumer; muster = a fresh full platform. PUBACK is NATS's MQTT ack (the message is "
             "routed, not necessarily stored): lost = acked - stored."),
    "nats": ("nats-py JetStream publish with PubAck (QoS 1 semantics) as a platform NATS user on the device "
             f"subjects, {ROWS_PER_MESSAGE} metrics per message; raw = the bench's own BENCH_RAW stream on the same "
             "platform as ingest"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", help="run/endpoints.json of a running platform (default: start one)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing per scenario")
    parser.add_argument("--rate", type=float, default=12_000.0, help="offered messages/s (both scenarios)")
    parser.add_argument("--devices", type=int, default=1000, help="devices the messages are spread over")
    parser.add_argument("--publisher", choices=sorted(PUBLISHERS), default="mqtt",
                        help="mqtt: simulated MQTT devices through the edge; nats: nats-py as a platform user")
    parser.add_argument("--skip-raw", action="store_true", help="only the Muster scenario")
    args = parser.parse_args()
    if args.publisher == "mqtt":
        rows = run_mqtt(args)
    else:
        with platform(args) as endpoints:
            rows = asyncio.run(bench_nats(endpoints, args))
    print(f"publishers ({args.publisher}): {PUBLISHERS[args.publisher]}")
    print(f"offered {args.rate:g} msg/s for {args.duration:g}s over {args.devices} devices; {os.cpu_count()} cores")
    print(format_table(rows, [("scenario", "scenario"), ("offered", "offered"), ("published", "published"),
                              ("acked", "acked"), ("published_per_s", "acked/s"), ("stored_per_s", "stored/s"),
                              ("overall_per_s", "overall/s"), ("stored", "stored"), ("lost", "lost"),
                              ("failed", "unacked"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("probes", "probes"),
                              ("publisher_cpu", "pub cpu%"), ("machine_cpu", "machine cpu%"), ("load1", "load1")]))
    if len(rows) == 2 and rows[0]["stored_per_s"]:
        print(f"ratio muster/raw (stored/s): {rows[1]['stored_per_s'] / rows[0]['stored_per_s']:.2f} "
              "(target >= 0.6; target >= 10000 msg/s, p99 <= 1000 ms)")


if __name__ == "__main__":
    main()
