"""A bounded closed-loop load generator for benchmarks: N workers each keep one request in flight.

A `Call` sends one request and returns a status label ("OK", "NOT_FOUND", "200", ...); an exception
is counted as "exc:<TypeName>". After a warm-up, each request that completes inside the measurement
window contributes its latency and status; throughput is those completions divided by the window.

Everything is bounded: by time (warm-up + window + a drain limit, after which in-flight calls are
cancelled and counted as "cancelled") and by a total request count. `run_load_processes` runs the
same load from several processes (one client each, `concurrency` split between them) and merges the
results, for clients that would otherwise saturate one core; every child is joined or terminated.

CPU accounting (`cpu_seconds`) reads /proc, so the caller can say which process was the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Call = Callable[[], Awaitable[str]]
"""Send one request; return its status label. Must apply its own per-request timeout."""

ClientFactory = Callable[[], AbstractAsyncContextManager[Call]]
"""Opens a client and yields its `Call`; must be picklable (a module-level function or a
functools.partial of one) for `run_load_processes`."""

DEFAULT_MAX_REQUESTS = 20_000_000
DRAIN_SECONDS = 15.0  # after the window, how long in-flight calls may take before they are cancelled
START_DELAY = 0.3  # between handing out the start time and the start, so every process is waiting
_CHILD_SETUP_SECONDS = 60.0
PERCENTILES = (50.0, 90.0, 99.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LoadResult:
    """What one load run measured. Latencies are in seconds, in completion order."""

    label: str
    concurrency: int
    window: float  # seconds of measurement
    ok: frozenset[str]
    latencies: array[float] = field(default_factory=lambda: array("d"))
    statuses: Counter[str] = field(default_factory=Counter)
    client_cpu: float = 0.0  # CPU seconds the client process(es) used during the window
    client: str = ""  # what generated the load, e.g. "grpc.aio x1 process"
    processes: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in self.ok)

    @property
    def rps(self) -> float:
        return self.count / self.window if self.window > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "client": self.client,
            "processes": self.processes,
            "window_s": round(self.window, 3),
            "requests": self.count,
            "rps": round(self.rps, 1),
            "p50_ms": _ms(percentile(ordered, 50)),
            "p90_ms": _ms(percentile(ordered, 90)),
            "p99_ms": _ms(percentile(ordered, 99)),
            "max_ms": _ms(ordered[-1] if ordered else math.nan),
            "errors": self.errors,
            "statuses": dict(self.statuses.most_common()),
            "client_cpu_pct": round(100.0 * self.client_cpu / self.window, 1) if self.window > 0 else None,
            **self.extra,
        }

    @classmethod
    def merge(cls, parts: Sequence[LoadResult], *, label: str, concurrency: int, client: str) -> LoadResult:
        """Sum parts measured over the same window (one per client process)."""
        if not parts:
            raise ValueError("nothing to merge")
        merged = cls(label=label, concurrency=concurrency, window=max(p.window for p in parts),
                     ok=parts[0].ok, client=client, processes=len(parts))
        for part in parts:
            merged.latencies.extend(part.latencies)
            merged.statuses.update(part.statuses)
            merged.client_cpu += part.client_cpu
        return merged


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, 3)


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_load(call: Call, *, concurrency: int, duration: float, warmup: float, label: str = "",
                   ok: Iterable[str] = ("OK",), start_at: float | None = None,
                   max_requests: int = DEFAULT_MAX_REQUESTS, drain: float = DRAIN_SECONDS) -> LoadResult:
    """Keep `concurrency` requests in flight from `start_at` (time.monotonic(); default now) for
    `warmup + duration` seconds; measure the last `duration` seconds."""
    if concurrency < 1 or duration <= 0 or warmup < 0:
        raise ValueError("concurrency >= 1, duration > 0 and warmup >= 0 are required")
    start = time.monotonic() if start_at is None else start_at
    measure_from = start + warmup
    end = measure_from + duration
    result = LoadResult(label=label, concurrency=concurrency, window=duration, ok=frozenset(ok))
    latencies, statuses = result.latencies, result.statuses
    issued = 0

    async def worker() -> None:
        nonlocal issued
        clock = time.monotonic
        while issued < max_requests:
            began = clock()
            if began >= end:
                return
            issued += 1
            try:
                status = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status = f"exc:{type(exc).__name__}"
            finished = clock()
            if measure_from <= finished <= end:
                latencies.append(finished - began)
                statuses[status] += 1

    async def cpu_probe() -> None:
        await _sleep_until(measure_from)
        before = time.process_time()
        await _sleep_until(end)
        result.client_cpu = time.process_time() - before

    await _sleep_until(start)
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    probe = asyncio.create_task(cpu_probe())
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + (end - time.monotonic()) + drain):
            await asyncio.gather(*tasks, probe)
    except TimeoutError:
        pass  # counted below: the workers still in a call were cancelled
    finally:
        for task in (*tasks, probe):
            task.cancel()
        await asyncio.gather(*tasks, probe, return_exceptions=True)
    cancelled = sum(1 for task in tasks if task.cancelled())
    if cancelled:
        statuses["cancelled"] += cancelled
    return result


# --- several client processes -----------------------------------------------------------------

def _split(total: int, parts: int) -> list[int]:
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts) if base + (1 if i < rest else 0) > 0]


def _child_main(conn: Connection, factory: ClientFactory, concurrency: int, duration: float, warmup: float,
                ok: tuple[str, ...], max_requests: int) -> None:
    """In a spawned process: open the client, report ready, wait for the start time, run, send back."""
    async def main() -> None:
        async with factory() as call:
            conn.send(("ready", None))
            start_at = await asyncio.to_thread(_recv_start, conn)
            if start_at is None:
                return
            result = await run_load(call, concurrency=concurrency, duration=duration, warmup=warmup, ok=ok,
                                    start_at=start_at, max_requests=max_requests)
        conn.send(("result", (result.latencies.tobytes(), dict(result.statuses), result.client_cpu)))

    try:
        asyncio.run(main())
    except BaseException as exc:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", repr(exc)))
        raise
    finally:
        conn.close()


def _recv_start(conn: Connection) -> float | None:
    if not conn.poll(_CHILD_SETUP_SECONDS * 2):
        return None
    message = conn.recv()
    return float(message) if message is not None else None


def _recv(conn: Connection, timeout: float, expected: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"a load process sent no {expected!r} within {timeout:.0f}s")
    kind, payload = conn.recv()
    if kind == "error":
        raise RuntimeError(f"a load process failed: {payload}")
    if kind != expected:
        raise RuntimeError(f"a load process sent {kind!r}, expected {expected!r}")
    return payload


async def run_load_processes(factory: ClientFactory, *, processes: int, concurrency: int, duration: float,
                             warmup: float, label: str = "", client: str = "", ok: Iterable[str] = ("OK",),
                             max_requests: int = DEFAULT_MAX_REQUESTS,
                             on_window: Callable[[float, float], Coroutine[Any, Any, None]] | None = None,
                             ) -> LoadResult:
    """Run the load from `processes` spawned processes (concurrency split between them) in one window.

    `on_window(measure_from, end)` (optional) runs in this process alongside, e.g. to sample server CPU.
    """
    shares = _split(concurrency, max(1, processes))
    ok_tuple = tuple(ok)
    ctx = multiprocessing.get_context("spawn")
    children: list[tuple[Any, Connection]] = []
    try:
        for share in shares:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_child_main, daemon=True,
                               args=(child_end, factory, share, duration, warmup, ok_tuple,
                                     max_requests // len(shares)))
            proc.start()
            child_end.close()
            children.append((proc, parent_end))
        for _, conn in children:
            await asyncio.to_thread(_recv, conn, _CHILD_SETUP_SECONDS, "ready")
        start_at = time.monotonic() + START_DELAY
        for _, conn in children:
            conn.send(start_at)
        watcher = (asyncio.create_task(on_window(start_at + warmup, start_at + warmup + duration))
                   if on_window is not None else None)
        limit = START_DELAY + warmup + duration + DRAIN_SECONDS + 10.0
        parts: list[LoadResult] = []
        for share, (_, conn) in zip(shares, children, strict=True):
            raw, statuses, cpu = await asyncio.to_thread(_recv, conn, limit, "result")
            latencies: array[float] = array("d")
            latencies.frombytes(raw)
            parts.append(LoadResult(label=label, concurrency=share, window=duration, ok=frozenset(ok_tuple),
                                    latencies=latencies, statuses=Counter(statuses), client_cpu=cpu))
        if watcher is not None:
            await watcher
        return LoadResult.merge(parts, label=label, concurrency=concurrency, client=client)
    finally:
        for proc, conn in children:
            with contextlib.suppress(OSError):
                conn.close()
            await asyncio.to_thread(proc.join, 5.0)
            if proc.is_alive():
                proc.terminate()
                await asyncio.to_thread(proc.join, 5.0)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, 5.0)


# --- CPU accounting from /proc -----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after its closing parenthesis
    return raw[raw.rfind(")") + 2:].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (e.g. PostgreSQL backends of the postmaster)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(groups: Mapping[str, Callable[[], Iterable[int]]]) -> dict[str, dict[int, float]]:
    """CPU seconds per pid, per named group of pids (a callable, so process trees are re-read)."""
    return {name: {pid: process_cpu_seconds(pid) for pid in pids()} for name, pids in groups.items()}


def cpu_delta(before: Mapping[str, Mapping[int, float]], after: Mapping[str, Mapping[int, float]],
              window: float) -> dict[str, float]:
    """Percent of one core used by each group between two `cpu_seconds` samples (new pids count from 0)."""
    usage: dict[str, float] = {}
    for name, now in after.items():
        then = before.get(name, {})
        used = sum(max(0.0, seconds - then.get(pid, 0.0)) for pid, seconds in now.items())
        usage[name] = round(100.0 * used / window, 1) if window > 0 else math.nan
    return usage


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0.0
    ticks = [int(v) for v in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / _TICKS  # user..steal; guest time is already inside user


class CpuWindow:
    """Sample CPU of process groups at the start and end of a measurement window (monotonic times).

    `usage` maps each group to % of one core, plus "machine": every process on the host (so whatever
    else runs there shows up as the difference)."""

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]]) -> None:
        self.groups = groups
        self.usage: dict[str, float] = {}

    async def __call__(self, measure_from: float, end: float) -> None:
        await _sleep_until(measure_from)
        before, busy_before = cpu_seconds(self.groups), machine_busy_seconds()
        await _sleep_until(end - 0.05)  # just before the end: external clients may exit right at it
        window = max(1e-9, end - 0.05 - measure_from)
        self.usage = cpu_delta(before, cpu_seconds(self.groups), window)
        self.usage["machine"] = round(100.0 * (machine_busy_seconds() - busy_before) / window, 1)


# --- output --------------------------------------------------------------------------------------

def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain fixed-width table; `columns` are (key, heading)."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(heading)] + [len(r[i]) for r in cells]) for i, (_, heading) in enumerate(columns)]
    lines = ["  ".join(heading.rjust(w) if i else heading.ljust(w)
                       for i, ((_, heading), w) in enumerate(zip(columns, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)
