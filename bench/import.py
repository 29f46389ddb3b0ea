"""Bulk import benchmark: a generated CSV of N devices streamed to DeviceBulkService.ImportDevices over
direct gRPC, three times: dry run, first import (all created), re-import (all unchanged).

    .venv/bin/python bench/import.py [--rows 10000] [--template] [--endpoints FILE] [--json]

Without --endpoints it starts `muster up --ephemeral-ports` on a scratch data dir and stops it at the
end; with --endpoints (a running platform's run/endpoints.json) it adds a fresh tenant and leaves its
devices there. Prints rows/s and seconds per run, and per-batch latency percentiles read from the
registry's `bulk.batch` log lines (its own log file in the platform's data dir), with the p50 of each
step of a batch (plan: lookups and row decisions; write: device/sensor inserts; events: building
them; commit: outbox rows and COMMIT). Next to each run: the 1-minute load average when it started and
the CPU seconds the registry, the event consumers (the other services), PostgreSQL, NATS and the whole
machine used during it: on a shared 2-core machine those say more than the seconds alone. A
benchmark, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench._load import children_of, cpu_seconds, format_table, machine_busy_seconds, percentile
from bench._registry_config import bearer, log, loopback
from bench._registry_fixture import bench_tenant
from bench._registry_platform import platform_pids, started_platform
from muster.registry.v1 import bulk_service_pb2 as bulk
from muster.registry.v1 import bulk_service_pb2_grpc as bulk_grpc
from muster.registry.v1 import template_resources_pb2 as tpl
from muster.registry.v1 import template_service_pb2 as tsv
from muster.registry.v1 import template_service_pb2_grpc as tsv_grpc

CHUNK = 64 * 1024
IMPORT_TIMEOUT = 600.0
COLUMNS = (("run", "run"), ("rows", "rows"), ("seconds", "seconds"), ("rows_per_s", "rows/s"),
           ("created", "created"), ("unchanged", "unchanged"), ("errors", "errors"), ("batches", "batches"),
           ("batch_p50_ms", "batch p50 ms"), ("batch_p90_ms", "p90 ms"), ("batch_p99_ms", "p99 ms"),
           ("batch_max_ms", "max ms"), ("plan_p50_ms", "plan p50"), ("write_p50_ms", "write p50"),
           ("events_p50_ms", "events p50"), ("commit_p50_ms", "commit p50"), ("load1", "load1"),
           ("cpu_registry_s", "cpu reg s"), ("cpu_consumers_s", "cpu consumers s"), ("cpu_postgres_s", "cpu pg s"),
           ("cpu_nats_s", "cpu nats s"), ("machine_busy_s", "machine busy s"))
STEPS = ("plan", "write", "events", "commit")  # the steps of a batch the registry times (`<step>_ms`)


def generate_csv(rows: int, template: str | None) -> bytes:
    header = "serial,display_name,site,template,labels,notes,latitude,longitude,altitude\n"
    lines = [f"IMP-{i:07d},bench import {i},,{template or ''},floor={i % 10};kind=sensor,"
             f"created by bench/import.py,{52 + i / 1e5},{13 + i / 1e5},34.5\n" for i in range(rows)]
    return (header + "".join(lines)).encode()


async def _requests(data: bytes, dry_run: bool) -> AsyncIterator[bulk.ImportDevicesRequest]:
    yield bulk.ImportDevicesRequest(validate_only=dry_run)
    for i in range(0, len(data), CHUNK):
        yield bulk.ImportDevicesRequest(csv={"data": data[i:i + CHUNK]})


def _cpu_groups(endpoints: dict[str, Any]) -> dict[str, Callable[[], list[int]]]:
    """The platform's processes by role: the registry, the event consumers (every other service),
    PostgreSQL (postmaster and backends) and NATS."""
    pids = platform_pids(endpoints)
    services: dict[str, int] = {k: v for k, v in pids.get("services", {}).items() if isinstance(v, int)}
    postgres = pids.get("postgres")
    return {
        "registry": lambda: [pid for name, pid in services.items() if name == "registry"],
        "consumers": lambda: [pid for name, pid in services.items() if name != "registry"],
        "postgres": lambda: [postgres, *children_of(postgres)] if isinstance(postgres, int) else [],
        "nats": lambda: [pids["nats"]] if isinstance(pids.get("nats"), int) else [],
    }


def _cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each group used between two samples (pids that appeared count from 0)."""
    return {f"cpu_{name}_s": round(sum(max(0.0, s - before.get(name, {}).get(pid, 0.0)) for pid, s in now.items()), 1)
            for name, now in after.items()}


def _batch_lines(log_file: Path, tenant: str, skip_bytes: int) -> list[dict[str, Any]]:
    """The registry's `bulk.batch` log lines for `tenant` written after `skip_bytes`."""
    with log_file.open("rb") as source:
        source.seek(skip_bytes)
        found = []
        for raw in source:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if line.get("event") == "bulk.batch" and line.get("tenant") == tenant:
                    found.append(line)
    return found


async def run(endpoints: dict[str, Any], rows: int, with_template: bool) -> list[dict[str, Any]]:
    registry = loopback(endpoints["grpc"]["registry"])
    log_file = Path(endpoints["data_dir"]) / "logs" / "registry.log"
    results = []
    groups = _cpu_groups(endpoints)
    async with grpc.aio.insecure_channel(registry) as channel:
        tenant, token = await bench_tenant(channel, endpoints["admin_token"], "bench/import.py")
        template = None
        if with_template:
            created = await tsv_grpc.TemplateServiceStub(channel).CreateTemplate(tsv.CreateTemplateRequest(
                template=tpl.DeviceTemplate(display_name="bench pump", metrics=[
                    tpl.MetricDefinition(key="pressure", type=tpl.METRIC_TYPE_NUMBER, unit="bar", required=True),
                    tpl.MetricDefinition(key="flow", type=tpl.METRIC_TYPE_NUMBER, unit="l/min", required=True)])),
                metadata=bearer(token), timeout=30)
            template = created.name.removeprefix("templates/")
        data = generate_csv(rows, template)
        log(f"tenant {tenant}: {rows} rows, {len(data) / 1e6:.1f} MB of CSV"
            f"{' with a template (2 auto sensors per device)' if template else ''}")
        stub = bulk_grpc.DeviceBulkServiceStub(channel)
        for name, dry_run in (("dry run", True), ("first import", False), ("re-import", False)):
            skip = log_file.stat().st_size if log_file.exists() else 0
            load1 = os.getloadavg()[0]
            cpu_before, busy_before = cpu_seconds(groups), machine_busy_seconds()
            started = time.perf_counter()
            report = await stub.ImportDevices(_requests(data, dry_run), metadata=bearer(token),
                                              timeout=IMPORT_TIMEOUT)
            seconds = time.perf_counter() - started
            cpu = {**_cpu_used(cpu_before, cpu_seconds(groups)),
                   "machine_busy_s": round(machine_busy_seconds() - busy_before, 1)}
            await asyncio.sleep(0.5)  # let the service's log lines reach the file
            lines = _batch_lines(log_file, tenant, skip)
            batches = sorted(float(b["duration_ms"]) for b in lines)
            steps = {step: sorted(float(b[f"{step}_ms"]) for b in lines if f"{step}_ms" in b) for step in STEPS}
            results.append({
                "run": name, "rows": report.rows, "seconds": round(seconds, 2),
                "rows_per_s": round(report.rows / seconds), "created": report.created,
                "unchanged": report.unchanged, "errors": report.errors, "batches": len(batches),
                "batch_p50_ms": round(percentile(batches, 50), 1), "batch_p90_ms": round(percentile(batches, 90), 1),
                "batch_p99_ms": round(percentile(batches, 99), 1),
                "batch_max_ms": round(batches[-1], 1) if batches else None,
                **{f"{step}_p50_ms": round(percentile(times, 50), 1) if times else None
                   for step, times in steps.items()}, "load1": round(load1, 2), **cpu})
            log(f"{name}: {seconds:.2f}s")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the generated CSV [10000]")
    parser.add_argument("--template", action="store_true",
                        help="give every device a template with two required metrics (auto sensors)")
    parser.add_argument("--endpoints", type=Path, help="a running platform's run/endpoints.json (default: start one)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= 1_000_000:
        parser.error("--rows must be between 1 and 1000000")
    platform_cm: contextlib.AbstractContextManager[dict[str, Any]] = (
        contextlib.nullcontext(json.loads(args.endpoints.read_text())) if args.endpoints else started_platform())
    with platform_cm as endpoints:
        results = asyncio.run(run(endpoints, args.rows, args.template))
    print(json.dumps(results, indent=2) if args.json else format_table(results, COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
