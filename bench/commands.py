"""Commands benchmark: the round trip from CreateCommand to SUCCEEDED with auto-answering devices, and
sustained commands/s across many devices.

Devices are registered with a provisioning token whose template defines `ping`, connected over MQTT
(gmqtt, QoS 1, subscribed to their `commands/+`) and answer every command at once with `ack` then
`result` `{"status": "succeeded"}` (de-duplicating by command id, as the contract asks).

(a) round trip: CreateCommand at a fixed rate (default 100/s, open loop) round-robin over the devices;
    each is followed by WaitCommand; latency = WaitCommand returning SUCCEEDED minus the moment
    CreateCommand was called. Target p99 <= 50 ms at 100 commands/s.
(b) sustained: `--concurrency` callers each create a command and wait for it, over every device, for
    `--duration` s: commands/s that reached SUCCEEDED.

    .venv/bin/python bench/commands.py [--endpoints run/endpoints.json] [--devices 1000] [--rate 100]
        [--duration 15] [--concurrency 64]

Everything runs on one machine: the platform, this client and its devices share the cores (`busy%`);
on a shared machine, say what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import orjson

from bench._ingest_mqtt import mqtt_address
from bench._load import format_table, machine_busy_seconds, percentile
from bench._registry_config import RPC_TIMEOUT, bearer, log, loopback
from bench._registry_fixture import bench_tenant
from bench._registry_platform import started_platform
from muster.commands.v1 import command_service_pb2 as csvc
from muster.commands.v1 import command_service_pb2_grpc as csvc_grpc
from muster.commands.v1 import resources_pb2 as cpb
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.registry.v1 import template_service_pb2 as tsvc
from muster.registry.v1 import template_service_pb2_grpc as tsvc_grpc
from muster.runtime.mqtt_connection import MqttConnection
from muster.simulator import fleet
from muster.simulator.device import Credentials, topic

if TYPE_CHECKING:
    from muster.commands.v1.command_service_pb2_grpc import CommandServiceAsyncStub as Stub
else:
    Stub = csvc_grpc.CommandServiceStub

WAIT_SECONDS = 10.0


class Device:
    """One auto-answering device."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.seen: set[str] = set()
        self.connection = MqttConnection(lambda _mid: None, self._received)

    def _received(self, _topic: str, payload: bytes) -> None:
        command_id = str(orjson.loads(payload)["id"])
        if command_id in self.seen:  # a resend: answered already
            return
        self.seen.add(command_id)
        base = topic(self.credentials.id, f"commands/{command_id}")
        self.connection.publish(f"{base}/ack", b"{}")
        self.connection.publish(f"{base}/result", b'{"status":"succeeded","output":{"pong":true}}')

    async def connect(self, address: tuple[str, int], within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                await self.connection.connect(*address, f"{self.credentials.id}-bench", self.credentials.id,
                                              self.credentials.secret)
                self.connection.subscribe(topic(self.credentials.id, "commands/+"))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.connection = MqttConnection(lambda _mid: None, self._received)
                await asyncio.sleep(0.5)


async def register(channel: grpc.aio.Channel, admin_token: str, count: int) -> tuple[str, list[Credentials]]:
    """A fresh tenant with a `ping` template and `count` devices registered with it."""
    _, token = await bench_tenant(channel, admin_token, "bench/commands.py")
    template = await tsvc_grpc.TemplateServiceStub(channel).CreateTemplate(tsvc.CreateTemplateRequest(
        template=tpb.DeviceTemplate(display_name="bench pinger", commands=[tpb.CommandDefinition(name="ping")])),
        metadata=bearer(token), timeout=RPC_TIMEOUT)
    stub = prov_grpc.ProvisioningServiceStub(channel)
    created = await stub.CreateProvisioningToken(prov.CreateProvisioningTokenRequest(
        provisioning_token=ppb.ProvisioningToken(display_name="bench/commands.py", max_uses=count,
                                                 template=template.name)), metadata=bearer(token), timeout=RPC_TIMEOUT)

    async def one(serial: str) -> Credentials:
        response = await stub.RegisterDevice(prov.RegisterDeviceRequest(provisioning_token=created.secret,
                                                                        serial=serial), timeout=RPC_TIMEOUT)
        return Credentials(id=response.device_id, secret=response.device_secret, serial=serial)

    with tempfile.TemporaryDirectory(prefix="muster-bench-commands-") as scratch:
        devices, _ = await fleet.ensure(Path(scratch) / "devices.json", count, one)
    return token, devices


async def round_trip(stub: Stub, token: str, device_id: str) -> tuple[float, bool]:
    started = time.perf_counter()
    created = await stub.CreateCommand(csvc.CreateCommandRequest(
        parent=f"devices/{device_id}", command=cpb.Command(command="ping")), metadata=bearer(token),
        timeout=RPC_TIMEOUT)
    request = csvc.WaitCommandRequest(name=created.name)
    request.timeout.FromSeconds(int(WAIT_SECONDS))
    done = await stub.WaitCommand(request, metadata=bearer(token), timeout=WAIT_SECONDS + 5)
    return time.perf_counter() - started, done.state == cpb.COMMAND_STATE_SUCCEEDED


async def ready(stub: Stub, token: str, devices: list[Device], within: float = 300.0) -> None:
    """Every device known to the commands service and online: one command each succeeds."""
    deadline = time.monotonic() + within
    pending = [d.credentials.id for d in devices]
    while pending:
        results = await asyncio.gather(*(round_trip(stub, token, d) for d in pending), return_exceptions=True)
        pending = [d for d, r in zip(pending, results, strict=True) if isinstance(r, BaseException) or not r[1]]
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} devices never answered")
        if pending:
            await asyncio.sleep(1.0)


async def open_loop(stub: Stub, token: str, devices: list[Device], rate: float,
                    duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    failed = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(device: Device) -> None:
        nonlocal failed
        try:
            elapsed, ok = await round_trip(stub, token, device.credentials.id)
        except grpc.aio.AioRpcError:
            failed += 1
            return
        if ok:
            latencies.append(elapsed)
        else:
            failed += 1

    cpu0, t0 = machine_busy_seconds(), time.perf_counter()
    for k, device in zip(range(int(rate * duration)), itertools.cycle(devices), strict=False):
        if (delay := t0 + k / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(device))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"phase": f"round trip @{rate:g}/s", "count": len(latencies), "rate": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": latencies[-1] * 1000 if latencies else None, "failed": failed,
            "busy%": 100 * (machine_busy_seconds() - cpu0) / elapsed / (os.cpu_count() or 1)}


async def closed_loop(stub: Stub, token: str, devices: list[Device], concurrency: int,
                      duration: float) -> dict[str, Any]:
    done, failed, counter = 0, 0, itertools.count()
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def caller() -> None:
        nonlocal done, failed
        while time.perf_counter() < deadline:
            device = devices[next(counter) % len(devices)]
            try:
                elapsed, ok = await round_trip(stub, token, device.credentials.id)
            except grpc.aio.AioRpcError:
                failed += 1
                continue
            if ok:
                done += 1
                latencies.append(elapsed)
            else:
                failed += 1

    cpu0, t0 = machine_busy_seconds(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"phase": f"sustained @{concurrency} in flight", "count": done, "rate": done / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": latencies[-1] * 1000 if latencies else None, "failed": failed,
            "busy%": 100 * (machine_busy_seconds() - cpu0) / elapsed / (os.cpu_count() or 1)}


async def bench(endpoints: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    async with grpc.aio.insecure_channel(loopback(endpoints["grpc"]["registry"])) as registry_channel:
        token, credentials = await register(registry_channel, str(endpoints["admin_token"]), args.devices)
    devices = [Device(c) for c in credentials]
    address = mqtt_address(endpoints)
    for start in range(0, len(devices), 100):
        await asyncio.gather(*(d.connect(address) for d in devices[start:start + 100]))
    log(f"{len(devices)} devices connected")
    async with grpc.aio.insecure_channel(loopback(endpoints["grpc"]["commands"])) as channel:
        stub: Stub = csvc_grpc.CommandServiceStub(channel)
        await ready(stub, token, devices)
        log("every device answered a first command")
        rows = [await open_loop(stub, token, devices, args.rate, args.duration)]
        rows.append(await closed_loop(stub, token, devices, args.concurrency, args.duration))
    for device in devices:
        await device.connection.disconnect()
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
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="commands/s of the round-trip phase")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=64, help="callers of the sustained phase")
    args = parser.parse_args()
    with platform(args) as endpoints:
        rows = asyncio.run(bench(endpoints, args))
    print(f"{args.devices} auto-answering MQTT devices (gmqtt, ack + result); {os.cpu_count()} cores")
    print(format_table(rows, [("phase", "phase"), ("count", "succeeded"), ("rate", "per s"), ("p50_ms", "p50 ms"),
                              ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("failed", "failed"), ("busy%", "busy%")]))
    print("target: round trip p99 <= 50 ms at 100 commands/s")


if __name__ == "__main__":
    main()
