"""Device self-registration benchmark: RegisterDevice over direct gRPC (no operator token, one
multi-use provisioning token), then RotateDeviceSecret on the registered devices.

    .venv/bin/python bench/provisioning.py [--devices 2000] [--concurrency 32] [--endpoints FILE]

Without --endpoints it starts `muster up --ephemeral-ports` on a scratch data dir and stops it at the
end; with --endpoints it adds a fresh tenant to that platform and leaves it there. Every registration is
a real one (two transactions, a device row, its template-less sensors, a secret row, two events). A
benchmark, not a test: it prints numbers and asserts none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench._load import percentile
from bench._registry_config import bearer, log, loopback
from bench._registry_fixture import bench_tenant
from bench._registry_platform import started_platform
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc

TIMEOUT = 30.0


async def _timed(calls: Sequence[Callable[[], Awaitable[object]]], concurrency: int) -> dict[str, float]:
    """Run every call, `concurrency` at a time; calls/s and latency percentiles in ms."""
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(calls))

    async def worker() -> None:
        nonlocal errors
        while queue:
            call = queue.pop()
            started = time.perf_counter()
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"calls": len(calls), "errors": errors, "seconds": round(elapsed, 2),
            "per_second": round(len(calls) / elapsed, 1), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


async def run(endpoints: dict[str, object], devices: int, concurrency: int) -> dict[str, dict[str, float]]:
    grpc_endpoints = endpoints["grpc"]
    assert isinstance(grpc_endpoints, dict)
    target = loopback(str(grpc_endpoints["registry"]))
    async with grpc.aio.insecure_channel(target) as channel:
        _, admin = await bench_tenant(channel, str(endpoints["admin_token"]), "bench/provisioning.py")
        stub = prov_grpc.ProvisioningServiceStub(channel)
        token = await stub.CreateProvisioningToken(prov.CreateProvisioningTokenRequest(
            provisioning_token=ppb.ProvisioningToken(display_name="bench", max_uses=devices)),
            metadata=bearer(admin), timeout=TIMEOUT)
        names: list[str] = []

        def register(i: int) -> Callable[[], Awaitable[object]]:
            async def call() -> object:
                response = await stub.RegisterDevice(prov.RegisterDeviceRequest(
                    provisioning_token=token.secret, serial=f"BENCH-{i:07d}"), timeout=TIMEOUT)
                names.append(response.device.name)
                return response
            return call

        def rotate(name: str) -> Callable[[], Awaitable[object]]:
            return lambda: stub.RotateDeviceSecret(prov.RotateDeviceSecretRequest(name=name), metadata=bearer(admin),
                                                   timeout=TIMEOUT)

        log(f"registering {devices} devices, {concurrency} at a time")
        registered = await _timed([register(i) for i in range(devices)], concurrency)
        log(f"rotating {len(names)} secrets, {concurrency} at a time")
        rotated = await _timed([rotate(name) for name in names], concurrency)
    return {"RegisterDevice": registered, "RotateDeviceSecret": rotated}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--endpoints", type=Path, help="run/endpoints.json of a running platform")
    args = parser.parse_args(argv)
    if args.endpoints:
        results = asyncio.run(run(json.loads(args.endpoints.read_text()), args.devices, args.concurrency))
    else:
        with started_platform() as endpoints:
            results = asyncio.run(run(endpoints, args.devices, args.concurrency))
    for name, row in results.items():
        print(f"{name:20} " + "  ".join(f"{key}={value}" for key, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
