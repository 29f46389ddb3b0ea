"""h2load (nghttp2) as the load client: a run with its per-request log, read back into a LoadResult."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench._load import CpuWindow, LoadResult
from bench._registry_config import RPC_TIMEOUT

H2LOAD_GRACE = 30.0


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
