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
import functools
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import httpx

from bench import _echo
from bench._load import (
    Call,
    ClientFactory,
    CpuWindow,
    LoadResult,
    children_of,
    format_table,
    run_load_processes,
)
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.registry.v1 import token_service_pb2 as tok
from muster.registry.v1 import token_service_pb2_grpc as tok_grpc

ROOT = Path(__file__).resolve().parent.parent
LIST_FILTER = 'labels.floor = "3"'
LIST_PAGE_SIZE = 50
RPC_TIMEOUT = 10.0  # per request, every client
START_TIMEOUT = 120.0
STOP_TIMEOUT = 90.0
SEED_CONCURRENCY = 16
H2LOAD_GRACE = 30.0

TARGET_GET_VS_ECHO = 0.6
TARGET_REST_VS_GRPC = 0.8


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _loopback(address: str) -> str:
    """host:port or URL on 127.0.0.1 only: this benchmark must not send traffic anywhere else."""
    host = urllib.parse.urlsplit(address if "//" in address else f"//{address}").hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing to benchmark {address!r}: only 127.0.0.1 is allowed")
    return address


# --- the platform ------------------------------------------------------------------------------

@contextlib.contextmanager
def started_platform() -> Iterator[dict[str, Any]]:
    """`muster up` in its own session on a scratch dir; SIGTERM (then SIGKILL of the session) at exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="muster-bench-"))  # not under a 0700 dir: postgres runs as another user
    log_path = data_dir.parent / f"{data_dir.name}-supervisor.log"
    muster = Path(sys.executable).with_name("muster")
    argv = [str(muster) if muster.exists() else sys.executable, *([] if muster.exists() else ["-m", "muster.cli.app"]),
            "up", "--data-dir", str(data_dir), "--ephemeral-ports"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    endpoints_file = data_dir / "run" / "endpoints.json"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                   env=env, start_new_session=True)
    try:
        log(f"starting the platform in {data_dir} (pid {process.pid}, log {log_path})")
        deadline = time.monotonic() + START_TIMEOUT
        while not endpoints_file.exists():
            if process.poll() is not None:
                raise RuntimeError(f"muster up exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"muster up was not ready within {START_TIMEOUT:.0f}s; see {log_path}")
            time.sleep(0.1)
        endpoints: dict[str, Any] = json.loads(endpoints_file.read_text())
        yield endpoints
    finally:
        _stop_platform(process)
        shutil.rmtree(data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            log_path.unlink()


def _stop_platform(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        log("stopping the platform")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log("the platform did not stop in time: killing its session")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything left in its session (normally nothing)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


@contextlib.contextmanager
def started_echo(size: int) -> Iterator[tuple[str, int]]:
    """The bare echo service in its own process; yields (target, pid). It exits when its stdin closes."""
    process = subprocess.Popen([sys.executable, "-m", "bench._echo", "--size", str(size)],
                               cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()  # blocks until it listens (or exits)
        match = re.fullmatch(r"PORT (\d+)", line)
        if match is None:
            raise RuntimeError(f"the echo service did not start (said {line!r}, exit {process.poll()})")
        yield f"127.0.0.1:{match.group(1)}", process.pid
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _pids(endpoints: dict[str, Any]) -> dict[str, Any]:
    pids_file = endpoints.get("pids_file") or str(Path(endpoints["data_dir"]) / "run" / "pids.json")
    try:
        pids: dict[str, Any] = json.loads(Path(pids_file).read_text())
    except (OSError, ValueError):
        return {}
    return pids


# --- setup: tenant, token, devices ----------------------------------------------------------------

@dataclass(frozen=True)
class Fixture:
    tenant: str
    token: str
    device_ids: tuple[str, ...]
    device_size: int  # bytes of one serialized Device
    list_size: int  # bytes of one serialized ListDevicesResponse (page_size 50, the filter)
    get_request: bytes  # a serialized GetDeviceRequest (the echo client sends one of these)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _new_device(i: int) -> pb.Device:
    return pb.Device(
        display_name=f"bench sensor {i:04d}", serial=f"BENCH-{i:06d}", notes="created by bench/registry.py",
        labels={"floor": str(i % 10), "room": f"r{i % 50:02d}", "kind": "gateway" if i % 25 == 0 else "sensor"},
        location=pb.Location(latitude=52.0 + i / 10_000, longitude=13.0 + i / 10_000, altitude=34.0))


async def seed(grpc_target: str, admin_token: str, devices: int) -> Fixture:
    tenant = f"bench-{secrets.token_hex(4)}"
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        await ten_grpc.TenantServiceStub(channel).CreateTenant(
            ten.CreateTenantRequest(tenant_id=tenant, tenant=pb.Tenant(display_name="bench/registry.py")),
            metadata=_bearer(admin_token), timeout=RPC_TIMEOUT)
        issued = await tok_grpc.TokenServiceStub(channel).IssueOperatorToken(
            tok.IssueOperatorTokenRequest(tenant=f"tenants/{tenant}", role=tok.ROLE_ADMIN, subject="bench"),
            metadata=_bearer(admin_token), timeout=RPC_TIMEOUT)
        stub = dev_grpc.DeviceServiceStub(channel)
        metadata = _bearer(issued.token)
        ids: list[str] = []
        todo = iter(range(devices))

        async def creator() -> None:
            for i in todo:  # shared iterator: bounded by `devices`
                created = await stub.CreateDevice(dev.CreateDeviceRequest(device=_new_device(i)),
                                                  metadata=metadata, timeout=RPC_TIMEOUT)
                ids.append(created.name.removeprefix("devices/"))

        started = time.monotonic()
        await asyncio.gather(*(creator() for _ in range(SEED_CONCURRENCY)))
        log(f"tenant {tenant}: {len(ids)} devices created in {time.monotonic() - started:.1f}s")
        one = await stub.GetDevice(dev.GetDeviceRequest(name=f"devices/{ids[0]}"), metadata=metadata,
                                   timeout=RPC_TIMEOUT)
        page = await stub.ListDevices(dev.ListDevicesRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER),
                                      metadata=metadata, timeout=RPC_TIMEOUT)
    return Fixture(tenant=tenant, token=issued.token, device_ids=tuple(ids), device_size=one.ByteSize(),
                   list_size=page.ByteSize(),
                   get_request=dev.GetDeviceRequest(name=f"devices/{ids[0]}").SerializeToString())


# --- Python clients (module level: they are pickled into the load processes) --------------------

def _code(exc: grpc.aio.AioRpcError) -> str:
    return str(exc.code().name)


@contextlib.asynccontextmanager
async def echo_client(target: str, request: bytes) -> AsyncIterator[Call]:
    async with grpc.aio.insecure_channel(target) as channel:
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(_echo.METHOD)  # bytes in/out
        await method(request, timeout=RPC_TIMEOUT)  # connect before the clock starts

        async def call() -> str:
            try:
                await method(request, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return "OK"

        yield call


@contextlib.asynccontextmanager
async def get_device_client(target: str, token: str, ids: Sequence[str]) -> AsyncIterator[Call]:
    names = [f"devices/{i}" for i in ids]
    metadata = _bearer(token)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = dev_grpc.DeviceServiceStub(channel)
        await stub.GetDevice(dev.GetDeviceRequest(name=names[0]), metadata=metadata, timeout=RPC_TIMEOUT)

        async def call() -> str:
            try:
                await stub.GetDevice(dev.GetDeviceRequest(name=random.choice(names)),
                                     metadata=metadata, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return "OK"

        yield call


@contextlib.asynccontextmanager
async def list_devices_client(target: str, token: str) -> AsyncIterator[Call]:
    metadata = _bearer(token)
    request = dev.ListDevicesRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = dev_grpc.DeviceServiceStub(channel)
        await stub.ListDevices(request, metadata=metadata, timeout=RPC_TIMEOUT)

        async def call() -> str:
            try:
                await stub.ListDevices(request, metadata=metadata, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return "OK"

        yield call


@contextlib.asynccontextmanager
async def httpx_client(base_url: str, token: str, paths: Sequence[str], connections: int) -> AsyncIterator[Call]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=RPC_TIMEOUT) as http:
        await http.get(paths[0])

        async def call() -> str:
            response = await http.get(random.choice(paths))
            return str(response.status_code)

        yield call


def rest_get_paths(ids: Iterable[str]) -> list[str]:
    return [f"/v1/devices/{i}" for i in ids]


def rest_list_path() -> str:
    return "/v1/devices?" + urllib.parse.urlencode({"page_size": LIST_PAGE_SIZE, "filter": LIST_FILTER},
                                                  quote_via=urllib.parse.quote)


# --- h2load (nghttp2) as the load client -----------------------------------------------------------

def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message, as h2load sends it as the request body."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


async def run_h2load(label: str, *, urls: Sequence[str], concurrency: int, duration: float, warmup: float,
                     h1: bool, headers: Sequence[str] = (), body: bytes | None = None,
                     cpu: CpuWindow | None = None, workdir: Path) -> LoadResult:
    """h2load -D with its own per-request log; the first `warmup` seconds of the log are dropped.

    HTTP/1.1: `concurrency` connections with one request each. h2c: one connection with `concurrency`
    streams (as a gRPC channel does). h2load checks HTTP statuses only, not grpc-status trailers.
    """
    urls_file, log_file, body_file = workdir / f"{label}.urls", workdir / f"{label}.log", workdir / f"{label}.body"
    urls_file.write_text("\n".join(urls) + "\n")
    clients, streams = (concurrency, 1) if h1 else (1, concurrency)
    argv = ["h2load", "-D", f"{round((warmup + duration) * 1000)}ms", "-c", str(clients), "-m", str(streams), "-t", "1",
            "-T", str(int(RPC_TIMEOUT)), "-N", str(int(RPC_TIMEOUT)), "--log-file", str(log_file),
            "-i", str(urls_file)]
    if h1:
        argv.append("--h1")
    for header in headers:
        argv += ["-H", header]
    if body is not None:
        body_file.write_bytes(body)
        argv += ["-d", str(body_file)]
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    launched = time.monotonic()
    watcher: asyncio.Task[None] | None = None
    if cpu is not None:
        groups = dict(cpu.groups)
        groups["client"] = lambda: [process.pid]
        cpu = CpuWindow(groups)
        watcher = asyncio.create_task(cpu(launched + warmup, launched + warmup + duration))
    try:
        async with asyncio.timeout(warmup + duration + H2LOAD_GRACE):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"h2load failed ({process.returncode}):\n{text[-2000:]}")
    result = _h2load_result(label, log_file, concurrency=concurrency, warmup=warmup, duration=duration)
    result.client = f"h2load ({'HTTP/1.1' if h1 else 'h2c'}, {clients} conn x {streams} stream, 1 thread)"
    summary = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                        r"(\d+) errored, (\d+) timeout", text)
    if summary is not None:
        failed, errored, timeout = (int(summary.group(i)) for i in (5, 6, 7))
        if errored or timeout:
            result.statuses["h2load_errored"] += errored
            result.statuses["h2load_timeout"] += timeout
        result.extra["h2load_failed_total"] = failed
    if cpu is not None and watcher is not None and cpu.usage:
        result.client_cpu = cpu.usage.pop("client", 0.0) / 100.0 * result.window
        result.extra["cpu_pct"] = cpu.usage
    return result


def _h2load_result(label: str, log_file: Path, *, concurrency: int, warmup: float, duration: float) -> LoadResult:
    rows: list[tuple[int, str, int]] = []
    with log_file.open() as lines:
        for line in lines:
            parts = line.split("\t")
            if len(parts) >= 3:
                rows.append((int(parts[0]), parts[1], int(parts[2])))
    result = LoadResult(label=label, concurrency=concurrency, window=duration, ok=frozenset({"200"}))
    if not rows:
        return result
    first = min(start for start, _, _ in rows)
    measure_from, end = first + int(warmup * 1e6), first + int((warmup + duration) * 1e6)
    last_done = max(start + took for start, _, took in rows)
    result.window = (min(end, last_done) - measure_from) / 1e6
    latencies, statuses = array("d"), Counter[str]()
    for start, status, took in rows:
        done = start + took
        if measure_from <= done <= end:
            latencies.append(took / 1e6)
            statuses[status] += 1
    result.latencies, result.statuses = latencies, statuses
    return result


# --- the run ---------------------------------------------------------------------------------------

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
    registry = _loopback(endpoints["grpc"]["registry"])
    rest = _loopback(str(endpoints["rest"]).rstrip("/"))
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


def cpu_groups(endpoints: dict[str, Any], echo_pid: int) -> dict[str, Callable[[], list[int]]]:
    pids = _pids(endpoints)
    groups: dict[str, Callable[[], list[int]]] = {"echo": lambda: [echo_pid]}
    registry = pids.get("services", {}).get("registry")
    if isinstance(registry, int):
        groups["registry"] = lambda: [registry]
    postgres = pids.get("postgres")
    if isinstance(postgres, int):
        groups["postgres"] = lambda: [postgres, *children_of(postgres)]
    envoy = pids.get("envoy")
    if isinstance(envoy, int):
        groups["envoy"] = lambda: [envoy]
    return groups


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


def _row(s: Scenario, r: LoadResult) -> dict[str, Any]:
    summary = r.summary()
    summary.update(scenario=s.name, client_kind=s.client)
    cpu = summary.get("cpu_pct") or {}
    for name in ("registry", "postgres", "envoy", "echo", "machine"):
        summary[f"{name}_cpu_pct"] = cpu.get(name)
    if "machine" in cpu and summary.get("client_cpu_pct") is not None:
        ours = sum(v for k, v in cpu.items() if k != "machine") + summary["client_cpu_pct"]
        summary["other_cpu_pct"] = round(max(0.0, cpu["machine"] - ours), 1)  # not this benchmark's processes
    return summary


def ratios(rows: Sequence[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    def rps(name: str, client: str) -> float | None:
        for row in rows:
            if row["scenario"] == name and row["client_kind"] == client and row["concurrency"] == top:
                value = row["rps"]
                return float(value) if row["requests"] else None
        return None

    def ratio(label: str, num: tuple[str, str], den: tuple[str, str], target: float | None) -> dict[str, Any]:
        a, b = rps(*num), rps(*den)
        value = round(a / b, 3) if a is not None and b else None
        return {"ratio": label, "value": value, "target": target,
                "meets_target": None if value is None or target is None else value >= target,
                "numerator": f"{num[0]} [{num[1]}]@{top}", "denominator": f"{den[0]} [{den[1]}]@{top}"}

    out = [ratio(f"GetDevice@{top} / echo@{top} (grpcio client)", ("grpc GetDevice", "grpcio"),
                 ("echo direct", "grpcio"), TARGET_GET_VS_ECHO)]
    if rps("echo direct", "h2load") is not None:
        out.append(ratio(f"GetDevice@{top} / echo@{top} (h2load client)", ("grpc GetDevice", "h2load"),
                         ("echo direct", "h2load"), TARGET_GET_VS_ECHO))
    for client in ("h2load", "httpx"):
        if rps("REST GetDevice via Envoy", client) is not None:
            out.append(ratio(f"REST GetDevice@{top} via Envoy [{client}] / gRPC GetDevice@{top} direct [grpcio]",
                             ("REST GetDevice via Envoy", client), ("grpc GetDevice", "grpcio"), TARGET_REST_VS_GRPC))
    if rps("REST GetDevice via Envoy", "h2load") is not None and rps("grpc GetDevice", "h2load") is not None:
        out.append(ratio(f"REST GetDevice@{top} via Envoy [h2load] / gRPC GetDevice@{top} direct [h2load]",
                         ("REST GetDevice via Envoy", "h2load"), ("grpc GetDevice", "h2load"), TARGET_REST_VS_GRPC))
    out.append(ratio(f"gRPC GetDevice@{top} via Envoy / direct (grpcio)", ("grpc GetDevice via Envoy", "grpcio"),
                     ("grpc GetDevice", "grpcio"), None))
    return [r for r in out if r["value"] is not None]


COLUMNS = (("scenario", "scenario"), ("concurrency", "conc"), ("client", "client"), ("rps", "req/s"),
           ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
           ("errors", "errors"), ("client_cpu_pct", "client%"), ("registry_cpu_pct", "registry%"),
           ("postgres_cpu_pct", "pg%"), ("envoy_cpu_pct", "envoy%"), ("echo_cpu_pct", "echo%"),
           ("other_cpu_pct", "other%"))


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
            row = _row(s, result)
            rows.append(row)
            log(f"{s.key}: {row['rps']:,.0f} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                f"errors {row['errors']}  statuses {row['statuses']}")
    return rows


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
            registry = _loopback(endpoints["grpc"]["registry"])
            _loopback(endpoints["rest"])
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
