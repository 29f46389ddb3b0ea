"""Registry read-path benchmark: GetDevice and ListDevices over direct gRPC, through Envoy over REST and
over Envoy's gRPC passthrough, next to a bare grpc.aio echo service measured in the same run.

    .venv/bin/python bench/registry.py [--duration 10] [--warmup 2] [--endpoints FILE] [--json]

Without --endpoints it starts `muster up --ephemeral-ports` on a scratch data dir and stops it at the
end; with --endpoints (a running platform's run/endpoints.json) it adds a fresh tenant with its devices
to that platform and leaves them there. A benchmark, not a test: it prints numbers and asserts none.
All traffic goes to 127.0.0.1. See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench._load import format_table
from bench._registry_config import LIST_FILTER, LIST_PAGE_SIZE, log, loopback
from bench._registry_fixture import seed
from bench._registry_platform import started_echo, started_platform
from bench._registry_report import COLUMNS, ratios
from bench._registry_scenarios import measure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run [10]")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run [2]")
    parser.add_argument("--endpoints", type=Path, help="a running platform's run/endpoints.json (default: start one)")
    parser.add_argument("--devices", type=int, default=1000, help="devices to create [1000]")
    parser.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 64],
                        help="requests in flight, comma-separated [1,64]")
    parser.add_argument("--rest-clients", default="h2load,httpx",
                        help="REST load clients, first one is the reference: h2load and/or httpx [h2load,httpx]")
    parser.add_argument("--rest-protocol", choices=("h1", "h2"), default="h1",
                        help="h2load's protocol to Envoy: h1 = one HTTP/1.1 connection per request in flight, "
                             "h2 = one h2c connection [h1]")
    parser.add_argument("--grpc-clients", default="grpcio,h2load",
                        help="gRPC load clients: grpcio (always) and h2load for echo/GetDevice [grpcio,h2load]")
    parser.add_argument("--httpx-processes", type=int, default=2, help="processes for the httpx client [2]")
    parser.add_argument("--only", help="regex: run only scenarios whose key matches, e.g. 'GetDevice.*@64'")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the results as JSON to FILE, or with no FILE print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.devices < 1 or min(args.concurrency) < 1:
        parser.error("--duration > 0, --warmup >= 0, --devices >= 1 and --concurrency >= 1 are required")
    if args.duration > 600 or args.devices > 100_000 or max(args.concurrency) > 4096:
        parser.error("bounded: --duration <= 600, --devices <= 100000, --concurrency <= 4096")

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: load processes, echo, platform

    signal.signal(signal.SIGTERM, on_sigterm)
    platform_cm: contextlib.AbstractContextManager[dict[str, Any]] = (
        contextlib.nullcontext(json.loads(args.endpoints.read_text())) if args.endpoints else started_platform())
    try:
        with platform_cm as endpoints:
            registry = loopback(endpoints["grpc"]["registry"])
            loopback(endpoints["rest"])
            fx = asyncio.run(seed(registry, endpoints["admin_token"], args.devices))
            with started_echo(fx.device_size) as (echo_target, echo_pid):
                log(f"echo service on {echo_target} (pid {echo_pid}), response {fx.device_size} bytes "
                    f"(= one serialized Device); ListDevices page = {fx.list_size} bytes")
                rows = asyncio.run(measure(args, endpoints, fx, echo_target, echo_pid))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    top = max(args.concurrency)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "grpcio": grpc.__version__,
                    "platform": platform.platform()},
        "config": {"duration_s": args.duration, "warmup_s": args.warmup, "devices": args.devices,
                   "concurrency": args.concurrency, "list_filter": LIST_FILTER, "list_page_size": LIST_PAGE_SIZE,
                   "device_bytes": fx.device_size, "list_page_bytes": fx.list_size,
                   "rest_protocol": args.rest_protocol, "platform": "--endpoints" if args.endpoints else "started"},
        "results": rows,
        "ratios": ratios(rows, top),
    }
    if args.json and args.json != "-":
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(format_table(rows, COLUMNS))
        print()
        print(f"CPU columns: % of one core during the measured window ({os.cpu_count()} cores = "
              f"{100 * (os.cpu_count() or 1)}%); other% = processes outside this benchmark.")
        for r in report["ratios"]:
            target = f" (target >= {r['target']}: {'met' if r['meets_target'] else 'NOT met'})" if r["target"] else ""
            print(f"{r['ratio']}: {r['value']}{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
