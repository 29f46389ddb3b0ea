"""What is measured: every scenario (path x client x concurrency) built from the command line, and the run
of each one with the CPU of the processes under test."""

from __future__ import annotations

import argparse
import functools
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _echo
from bench._load import ClientFactory, CpuWindow, LoadResult, run_load_processes
from bench._registry_clients import (
    echo_client,
    get_device_client,
    httpx_client,
    list_devices_client,
    rest_get_paths,
    rest_list_path,
)
from bench._registry_config import log, loopback
from bench._registry_fixture import Fixture
from bench._registry_h2load import grpc_frame, run_h2load
from bench._registry_platform import cpu_groups
from bench._registry_report import result_row


@dataclass(frozen=True)
class Scenario:
    name: str  # e.g. "grpc GetDevice"
    concurrency: int
    client: str  # "grpcio" | "httpx" | "h2load"
    factory: ClientFactory | None = None  # Python clients
    processes: int = 1
    ok: tuple[str, ...] = ("OK",)
    h2load: dict[str, Any] | None = None  # run_h2load keyword arguments

    @property
    def key(self) -> str:
        return f"{self.name} [{self.client}]@{self.concurrency}"


def build_scenarios(args: argparse.Namespace, endpoints: dict[str, Any], fx: Fixture, echo_target: str,
                    h2load_ok: bool) -> list[Scenario]:
    registry = loopback(endpoints["grpc"]["registry"])
    rest = loopback(str(endpoints["rest"]).rstrip("/"))
    envoy_grpc = rest.removeprefix("http://")
    ids = list(fx.device_ids)
    auth = f"authorization: Bearer {fx.token}"
    grpc_headers = ["content-type: application/grpc", "te: trailers"]
    get_body = grpc_frame(fx.get_request)
    rest_clients = [c for c in args.rest_clients.split(",") if c and (c != "h2load" or h2load_ok)]
    grpc_h2load = h2load_ok and "h2load" in args.grpc_clients.split(",")
    shuffled = random.sample(ids, len(ids))
    out: list[Scenario] = []
    for c in args.concurrency:
        out.append(Scenario("echo direct", c, "grpcio", functools.partial(echo_client, echo_target, fx.get_request)))
        if grpc_h2load:
            out.append(Scenario("echo direct", c, "h2load", ok=("200",), h2load={
                "urls": [f"http://{echo_target}{_echo.METHOD}"], "h1": False, "headers": grpc_headers,
                "body": grpc_frame(fx.get_request)}))
        out.append(Scenario("grpc GetDevice", c, "grpcio",
                            functools.partial(get_device_client, registry, fx.token, ids)))
        if grpc_h2load:
            out.append(Scenario("grpc GetDevice", c, "h2load", ok=("200",), h2load={
                "urls": [f"http://{registry}/muster.registry.v1.DeviceService/GetDevice"], "h1": False,
                "headers": [*grpc_headers, auth], "body": get_body}))
        out.append(Scenario("grpc ListDevices", c, "grpcio",
                            functools.partial(list_devices_client, registry, fx.token)))
        for client in rest_clients:
            if client == "h2load":
                out.append(Scenario("REST GetDevice via Envoy", c, "h2load", ok=("200",), h2load={
                    "urls": [rest + p for p in rest_get_paths(shuffled)], "h1": args.rest_protocol == "h1",
                    "headers": [auth]}))
                out.append(Scenario("REST ListDevices via Envoy", c, "h2load", ok=("200",), h2load={
                    "urls": [rest + rest_list_path()], "h1": args.rest_protocol == "h1", "headers": [auth]}))
            else:
                procs = min(args.httpx_processes, c)
                out.append(Scenario("REST GetDevice via Envoy", c, "httpx", functools.partial(
                    httpx_client, rest, fx.token, rest_get_paths(ids), max(1, c // procs)), procs, ("200",)))
                out.append(Scenario("REST ListDevices via Envoy", c, "httpx", functools.partial(
                    httpx_client, rest, fx.token, [rest_list_path()], max(1, c // procs)), procs, ("200",)))
        out.append(Scenario("grpc GetDevice via Envoy", c, "grpcio",
                            functools.partial(get_device_client, envoy_grpc, fx.token, ids)))
    if args.only:
        pattern = re.compile(args.only, re.IGNORECASE)
        out = [s for s in out if pattern.search(s.key)]
    return out


async def run_scenario(s: Scenario, args: argparse.Namespace, groups: dict[str, Callable[[], list[int]]],
                       workdir: Path) -> LoadResult:
    cpu = CpuWindow(groups)
    if s.h2load is not None:
        return await run_h2load(s.key.replace(" ", "_").replace("/", "_"), concurrency=s.concurrency,
                                duration=args.duration, warmup=args.warmup, cpu=cpu, workdir=workdir, **s.h2load)
    assert s.factory is not None
    client = f"{s.client} ({s.processes} process{'es' if s.processes > 1 else ''}" + (
        ", 1 channel each)" if s.client == "grpcio" else ", HTTP/1.1 pool each)")
    result = await run_load_processes(s.factory, processes=s.processes, concurrency=s.concurrency,
                                      duration=args.duration, warmup=args.warmup, label=s.key, client=client,
                                      ok=s.ok, on_window=cpu)
    result.extra["cpu_pct"] = cpu.usage
    return result


async def measure(args: argparse.Namespace, endpoints: dict[str, Any], fx: Fixture, echo_target: str,
                  echo_pid: int) -> list[dict[str, Any]]:
    h2load_ok = shutil.which("h2load") is not None
    if not h2load_ok:
        log("h2load not found (apt-get install nghttp2-client): REST load comes from httpx only")
    scenarios = build_scenarios(args, endpoints, fx, echo_target, h2load_ok)
    groups = cpu_groups(endpoints, echo_pid)
    rows: list[dict[str, Any]] = []
    per_run = args.warmup + args.duration
    log(f"{len(scenarios)} runs of {per_run:g}s each (~{len(scenarios) * (per_run + 1.5) / 60:.1f} min)")
    with tempfile.TemporaryDirectory(prefix="muster-bench-h2load-") as tmp:
        for s in scenarios:
            result = await run_scenario(s, args, groups, Path(tmp))
            row = result_row(s, result)
            rows.append(row)
            log(f"{s.key}: {row['rps']:,.0f} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                f"errors {row['errors']}  statuses {row['statuses']}")
    return rows
