"""Twin benchmark: desired updates/s, the latency from UpdateDesired to the device's MQTT client receiving
`twin/desired`, and reported updates/s sustained from many devices.

(a) desired latency: UpdateDesired (gRPC, force) at a fixed rate (default 200/s, open loop) round-robin
    over `--receivers` devices connected over MQTT (gmqtt, QoS 1, subscribed to their twin/desired);
    latency = the push arriving at the device minus the moment the call was made (target p99 <= 15 ms);
    "push" = arriving minus the call's return (the commit is done: the push leg alone).
(b) desired throughput: the same calls closed-loop at `--concurrency` in flight, calls/s.
(c) reported: `--devices` devices connected over MQTT publish `twin/reported` (QoS 1) at `--report-rate`
    msg/s in total for `--duration` s; the rate is what the twin applied (sum of reported_version read
    from PostgreSQL), over the time from the first publish until the last one was applied.

    .venv/bin/python bench/twin.py [--endpoints run/endpoints.json] [--devices 1000] [--rate 200]
        [--duration 15] [--receivers 50] [--concurrency 32] [--report-rate 3000]

Everything runs on one machine: the platform, this client and its MQTT devices share the cores, so
report the numbers with the machine's other load (the `other%` column)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import grpc
import orjson

from bench._ingest_mqtt import mqtt_address, register_fleet
from bench._load import format_table, machine_busy_seconds, percentile
from bench._registry_config import RPC_TIMEOUT, bearer, log, loopback
from bench._registry_platform import started_platform
from muster.runtime.mqtt_connection import MqttConnection
from muster.simulator.device import Credentials, topic
from muster.twin.v1 import twin_service_pb2 as svc
from muster.twin.v1 import twin_service_pb2_grpc as svc_grpc

if TYPE_CHECKING:
    from muster.twin.v1.twin_service_pb2_grpc import TwinServiceAsyncStub


class Device:
    """One MQTT device; records when each desired version arrived."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.arrived: dict[int, float] = {}
        self.waiting: dict[int, asyncio.Future[float]] = {}
        self.connection = MqttConnection(lambda _mid: None, self._received)

    def _received(self, _topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        version = int(orjson.loads(payload)["version"])
        self.arrived[version] = now
        waiter = self.waiting.pop(version, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    async def connect(self, address: tuple[str, int], within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                await self.connection.connect(*address, f"{self.credentials.id}-bench", self.credentials.id,
                                              self.credentials.secret)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.connection = MqttConnection(lambda _mid: None, self._received)
                await asyncio.sleep(0.5)


async def wait_for_twins(stub: TwinServiceAsyncStub, token: str, devices: list[Credentials]) -> None:
    for device in devices:
        while True:
            try:
                await stub.GetTwin(svc.GetTwinRequest(name=f"devices/{device.id}/twin"), metadata=bearer(token),
                                   timeout=RPC_TIMEOUT)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.2)


def _request(device: Credentials, k: int) -> svc.UpdateDesiredRequest:
    request = svc.UpdateDesiredRequest(name=f"devices/{device.id}/twin", force=True)
    request.patch.update({"setpoint": k, "mode": "bench"})
    return request


async def desired_latency(stub: TwinServiceAsyncStub, token: str, receivers: list[Device], rate: float,
                          duration: float) -> dict[str, Any]:
    """Open loop: one call every 1/rate s, whatever the previous ones are doing."""
    latencies: list[float] = []
    push_legs: list[float] = []  # from the call's return (committed) to the device: the push alone
    failures = 0
    lost = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(device: Device, k: int) -> None:
        nonlocal failures, lost
        started = time.perf_counter()
        try:
            twin = await stub.UpdateDesired(_request(device.credentials, k), metadata=bearer(token),
                                            timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError:
            failures += 1
            return
        returned = time.perf_counter()
        version = twin.desired_version
        arrived: float | None = device.arrived.get(version)
        if arrived is None:
            future = asyncio.get_running_loop().create_future()
            device.waiting[version] = future
            try:
                arrived = await asyncio.wait_for(future, 10.0)
            except TimeoutError:
                lost += 1
                return
        assert arrived is not None
        latencies.append(arrived - started)
        push_legs.append(max(0.0, arrived - returned))

    cpu0, t0 = machine_busy_seconds(), time.perf_counter()
    total = int(rate * duration)
    for k, device in zip(range(total), itertools.cycle(receivers), strict=False):
        due = t0 + k / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(device, k))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    latencies.sort()
    push_legs.sort()
    return {"phase": f"desired @{rate:g}/s", "count": len(latencies), "rate": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": (latencies[-1] * 1000) if latencies else None, "failed": failures + lost,
            "push_p50_ms": percentile(push_legs, 50) * 1000, "push_p99_ms": percentile(push_legs, 99) * 1000,
            "busy%": 100 * (machine_busy_seconds() - cpu0) / elapsed / (os.cpu_count() or 1)}


async def desired_throughput(stub: TwinServiceAsyncStub, token: str, devices: list[Credentials],
                             concurrency: int, duration: float) -> dict[str, Any]:
    done = 0
    failures = 0
    counter = itertools.count()
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done, failures
        while time.perf_counter() < deadline:
            k = next(counter)
            try:
                await stub.UpdateDesired(_request(devices[k % len(devices)], k), metadata=bearer(token),
                                         timeout=RPC_TIMEOUT)
                done += 1
            except grpc.aio.AioRpcError:
                failures += 1

    cpu0, t0 = machine_busy_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"phase": f"desired max @{concurrency} in flight", "count": done, "rate": done / elapsed,
            "failed": failures, "busy%": 100 * (machine_busy_seconds() - cpu0) / elapsed / (os.cpu_count() or 1)}


async def reported_sum(dsn: str, tenant: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('muster.platform', 'on', true)")
            return int(await conn.fetchval("SELECT coalesce(sum(reported_version), 0) FROM twin.twins "
                                           "WHERE tenant_id = $1", tenant))
    finally:
        await conn.close()


async def reported(devices: list[Device], dsn: str, tenant: str, rate: float, duration: float) -> dict[str, Any]:
    """Every device reports a changing value; each report changes the twin (reported_version + 1)."""
    before = await reported_sum(dsn, tenant)
    cpu0, t0 = machine_busy_seconds(), time.perf_counter()
    total = int(rate * duration)
    for k, device in zip(range(total), itertools.cycle(devices), strict=False):
        due = t0 + k / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        payload = b'{"state": {"temperature": %d, "uptime": %d}}' % (k % 50, k)
        device.connection.publish(topic(device.credentials.id, "twin/reported"), payload)
    published = time.perf_counter() - t0
    applied, last_change, last = before, time.perf_counter(), before
    while applied - before < total and time.perf_counter() - last_change < 10.0:
        await asyncio.sleep(0.25)
        applied = await reported_sum(dsn, tenant)
        if applied != last:
            last, last_change = applied, time.perf_counter()
    elapsed = last_change - t0
    count = applied - before
    return {"phase": f"reported @{rate:g}/s offered", "count": count, "rate": count / elapsed,
            "offered": total / published, "failed": total - count,
            "busy%": 100 * (machine_busy_seconds() - cpu0) / elapsed / (os.cpu_count() or 1)}


async def run(endpoints: dict[str, Any], secrets: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    registry, twin_target = loopback(endpoints["grpc"]["registry"]), loopback(endpoints["grpc"]["twin"])
    fleet = await register_fleet(registry, str(endpoints["admin_token"]), args.devices)
    address = mqtt_address(endpoints)
    dsn = f"postgresql://muster_owner:{secrets['postgres']['owner']}@{endpoints['postgres']}/muster"
    rows: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(twin_target) as channel:
        stub: TwinServiceAsyncStub = svc_grpc.TwinServiceStub(channel)
        log("waiting for the twins of the fleet")
        await wait_for_twins(stub, fleet.token, fleet.devices)
        log(f"connecting {len(fleet.devices)} devices over MQTT")
        devices = [Device(c) for c in fleet.devices]
        for start in range(0, len(devices), 50):
            await asyncio.gather(*(d.connect(address) for d in devices[start:start + 50]))
        receivers = devices[:args.receivers]
        for device in receivers:
            device.connection.subscribe(topic(device.credentials.id, "twin/desired"))
        await asyncio.sleep(1.0)
        log("warm-up")
        await desired_latency(stub, fleet.token, receivers, args.rate, 2.0)
        log(f"desired latency: {args.rate}/s for {args.duration}s")
        rows.append(await desired_latency(stub, fleet.token, receivers, args.rate, args.duration))
        log(f"desired throughput: {args.concurrency} in flight")
        rows.append(await desired_throughput(stub, fleet.token, fleet.devices, args.concurrency, args.duration / 2))
        if not args.skip_reported:
            log(f"reported: {args.report_rate}/s over {len(devices)} devices")
            rows.append(await reported(devices, dsn, fleet.tenant, args.report_rate, args.duration))
        for device in devices:
            await device.connection.disconnect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=Path, help="run/endpoints.json of a running platform (default: start one)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="UpdateDesired calls per second (latency phase)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--report-rate", type=float, default=3000.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--skip-reported", action="store_true", help="only the desired phases")
    args = parser.parse_args()

    def go(endpoints: dict[str, Any], data_dir: Path) -> None:
        secrets = json.loads((data_dir / "secrets.json").read_text())
        rows = asyncio.run(run(endpoints, secrets, args))
        print(format_table(rows, [("phase", "phase"), ("count", "count"), ("rate", "per s"), ("offered", "offered/s"),
                                  ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
                                  ("push_p50_ms", "push p50"), ("push_p99_ms", "push p99"),
                                  ("failed", "failed"), ("busy%", "machine busy%")]))

    if args.endpoints:
        go(json.loads(args.endpoints.read_text()), args.endpoints.resolve().parent.parent)
    else:
        with started_platform() as endpoints:
            go(endpoints, Path(endpoints["data_dir"]))


if __name__ == "__main__":
    main()
