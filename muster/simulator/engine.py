"""Runs a fleet of simulated devices in one asyncio loop: connects them (bounded concurrency), then
offers telemetry at the total rate for the duration (or until stopped), reporting every few seconds,
and ends with a clean shutdown and the run's overall figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from muster.simulator.device import Credentials, SimulatedDevice
from muster.simulator.schedule import Pacer, RoundRobin
from muster.simulator.stats import Report, Stats

TICK = 0.005


@dataclass(frozen=True)
class RunOptions:
    host: str
    port: int
    rate: float
    duration: float | None  # None: until stopped
    heartbeat_seconds: float = 30.0
    report_every: float = 5.0
    connect_within: float = 60.0
    window: int = 100  # unacknowledged QoS 1 telemetry per device


async def _wait_connected(devices: Sequence[SimulatedDevice], stop: asyncio.Event, within: float) -> None:
    deadline = time.monotonic() + within
    while not stop.is_set() and time.monotonic() < deadline:
        if all(d.ever_connected.is_set() for d in devices):
            return
        await asyncio.sleep(0.05)


async def simulate(fleet: Sequence[Credentials], options: RunOptions, stop: asyncio.Event,
                   emit: Callable[[Report], None]) -> Report:
    """Run until `options.duration` elapsed or `stop` is set; returns the overall report of the
    publishing phase (counted after every device has settled its PUBACKs or given up; `connected` as at
    the end of publishing)."""
    stats = Stats(time.monotonic())
    devices = [SimulatedDevice(c, stats.counters, window=options.window) for c in fleet]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(d.run(options.host, options.port, stopping,
                                       heartbeat_seconds=options.heartbeat_seconds)) for d in devices]
    connected, ended = 0, time.monotonic()
    try:
        await _wait_connected(devices, stop, options.connect_within)
        start = time.monotonic()
        stats.restart(start)  # the figures are the publishing phase's
        await _publish(devices, options, stop, stats, emit, start)
        connected, ended = sum(d.connected for d in devices), time.monotonic()  # before the goodbyes
    finally:
        stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    return stats.report(ended, connected=connected, devices=len(devices), overall=True)


async def _publish(devices: Sequence[SimulatedDevice], options: RunOptions, stop: asyncio.Event, stats: Stats,
                   emit: Callable[[Report], None], start: float) -> None:
    pacer, turns = Pacer(options.rate, start), RoundRobin(devices)
    next_report = start + options.report_every
    end = start + options.duration if options.duration is not None else float("inf")
    while not stop.is_set() and (now := time.monotonic()) < end:
        for _ in range(pacer.due(now)):
            stats.counters.offered += 1
            device = turns.take(SimulatedDevice.ready)
            if device is not None:
                device.send_telemetry()
        if now >= next_report:
            emit(stats.report(now, connected=sum(d.connected for d in devices), devices=len(devices)))
            next_report += options.report_every
        await asyncio.sleep(TICK)
