"""Device edge reconnect storm: N simulated MQTT 3.1.1 devices connect at once through NATS's auth
callout (the edge replicas check every secret against PostgreSQL), then all drop and reconnect.

    .venv/bin/python bench/edge_connect.py [--devices 10000] [--endpoints FILE] [--json]

Without --endpoints it starts `muster up --ephemeral-ports` on a scratch dir and stops it at the end.
Devices are announced to the edge the way the registry does (DeviceCreated + DeviceCredentialsChanged
on JetStream). Each simulated device is a bare asyncio MQTT client (CONNECT, wait for CONNACK, keep the
socket open): cheap enough for 10,000 in one process next to the platform on 2 cores. A refused or
timed-out connect is retried after a jittered 1-2 s, as real devices back off. Prints connects/s,
p50/p99 time-to-connected (from the storm's start, including retries) and the time until all are back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import nats

from bench._mqtt_connect import connect_packet
from bench._registry_config import log
from bench._registry_platform import started_platform
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.bus import EVENTS_STREAM
from muster.runtime.events import nats_subject, new_event
from muster.runtime.secrets import device_secret_hash, new_device_secret, parse_device_secret_key

CONNECT_TIMEOUT = 10.0


@dataclass
class Device:
    id: str
    secret: str
    writer: asyncio.StreamWriter | None = None
    attempts: int = 0
    connected_after: float = 0.0


@dataclass
class Storm:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    attempts: int = 0
    failed: int = 0

    def report(self, devices: int) -> dict[str, Any]:
        done = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(done[min(len(done) - 1, int(p * len(done)))], 3) if done else float("nan")
        return {"storm": self.name, "devices": devices, "connected": len(done), "failed": self.failed,
                "attempts": self.attempts, "all_back_seconds": round(self.seconds, 2),
                "connects_per_second": round(len(done) / self.seconds, 1) if self.seconds else 0.0,
                "p50_seconds": pct(0.50), "p99_seconds": pct(0.99)}


async def connect_one(device: Device, host: str, port: int, start: float, storm: Storm, deadline: float) -> None:
    while time.monotonic() < deadline:
        device.attempts += 1
        storm.attempts += 1
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            writer.write(connect_packet(f"{device.id}-c", device.id, device.secret))
            connack = await asyncio.wait_for(reader.readexactly(4), CONNECT_TIMEOUT)
            if connack[0] == 0x20 and connack[3] == 0:
                device.writer = writer
                storm.latencies.append(time.monotonic() - start)
                return
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        if writer is not None:
            writer.close()
        await asyncio.sleep(1.0 + random.random())
    storm.failed += 1


async def storm(name: str, devices: Sequence[Device], host: str, port: int, limit: float) -> Storm:
    result = Storm(name)
    start = time.monotonic()
    await asyncio.gather(*(connect_one(d, host, port, start, result, start + limit) for d in devices))
    result.seconds = time.monotonic() - start
    return result


def drop_all(devices: Sequence[Device]) -> None:
    for device in devices:
        if device.writer is not None:
            device.writer.transport.abort()  # like a network cut: no DISCONNECT
            device.writer = None


async def announce(endpoints: dict[str, Any], count: int, tenant: str) -> list[Device]:
    """DeviceCreated + DeviceCredentialsChanged per device on JetStream, as the registry's relay does."""
    data_dir = Path(endpoints["data_dir"])
    secrets = json.loads((data_dir / "secrets.json").read_text())
    key = parse_device_secret_key(secrets["device_secret_key"])
    password = secrets["nats"]["services"]["registry"]
    nc = await nats.connect(endpoints["nats"].replace("nats://", f"nats://muster_registry:{password}@"))
    js = nc.jetstream()
    devices = [Device(f"bench-{uuid.uuid4().hex[:12]}", new_device_secret()) for _ in range(count)]
    for start in range(0, count, 500):
        acks = []
        for device in devices[start:start + 500]:
            name = f"devices/{device.id}"
            for payload in (ev.DeviceCreated(device=pb.Device(name=name, state=pb.DEVICE_STATE_ACTIVE)),
                            ev.DeviceCredentialsChanged(device=name, secrets=[
                                ev.DeviceSecretHash(hmac_sha256=device_secret_hash(key, device.secret))])):
                event = new_event(payload, source="registry", tenant=tenant, subject=name)
                acks.append(js.publish(nats_subject(event), event.SerializeToString(),
                                       headers={"Nats-Msg-Id": event.id}, stream=EVENTS_STREAM))
        await asyncio.gather(*acks)
    await nc.close()
    return devices


async def wait_projected(endpoints: dict[str, Any], tenant: str, count: int, within: float = 600.0) -> float:
    """Until the edge's projection holds every announced device with its secret (superuser: no RLS)."""
    secrets = json.loads((Path(endpoints["data_dir"]) / "secrets.json").read_text())
    host, _, port = endpoints["postgres"].rpartition(":")
    conn = await asyncpg.connect(host=host, port=int(port), user="postgres", database="muster",
                                 password=secrets["postgres"]["superuser"])
    start = time.monotonic()
    try:
        while time.monotonic() - start < within:
            ready = await conn.fetchval("SELECT count(*) FROM ingest.edge_devices WHERE tenant_id = $1 "
                                        "AND state = 2 AND secrets <> '[]'::jsonb", tenant)
            if ready >= count:
                return time.monotonic() - start
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    raise RuntimeError("the edge's projection did not catch up")


async def run(endpoints: dict[str, Any], count: int, limit: float) -> list[dict[str, Any]]:
    host, _, port_text = endpoints["mqtt"].rpartition(":")
    port = int(port_text)
    log(f"announcing {count} devices")
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    published = time.monotonic()
    devices = await announce(endpoints, count, tenant)
    caught_up = await wait_projected(endpoints, tenant, count)
    log(f"published {2 * count} registry events in {time.monotonic() - published - caught_up:.1f}s; "
        f"the projection had them all {caught_up:.1f}s later")
    results = []
    first = await storm("first connect", devices, host, port, limit)
    results.append(first.report(count))
    log(f"first connect: {results[-1]}")
    drop_all(devices)
    await asyncio.sleep(2.0)
    again = await storm("reconnect storm", devices, host, port, limit)
    results.append(again.report(count))
    log(f"reconnect storm: {results[-1]}")
    drop_all(devices)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000, help="simulated devices [10000]")
    parser.add_argument("--limit", type=float, default=120.0, help="give up on a device after this many s [120]")
    parser.add_argument("--endpoints", type=Path, help="a running platform's run/endpoints.json (default: start one)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.endpoints:
        results = asyncio.run(run(json.loads(args.endpoints.read_text()), args.devices, args.limit))
    else:
        with started_platform() as endpoints:
            results = asyncio.run(run(endpoints, args.devices, args.limit))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        columns = ["storm", "devices", "connected", "failed", "attempts", "connects_per_second",
                   "p50_seconds", "p99_seconds", "all_back_seconds"]
        print("  ".join(f"{c:>19}" for c in columns))
        for row in results:
            print("  ".join(f"{row[c]!s:>19}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
