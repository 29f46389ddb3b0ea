"""kill -9 of ingest in the middle of a run: every message published is stored exactly once.

20,000 messages from 200 devices (100 each, inside the default per-device burst, so the rate limiter
drops nothing even when a restarted process sees redeliveries), published as a platform user on the
device subjects; ingest is SIGKILLed once part of them is stored, and the launcher restarts it."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import orjson
import pytest
from helpers import TenantTokens
from nats.aio.client import Client as NATS
from platform_fixture import RunningPlatform, alive

from .ingest_support import bus as bus  # fixture
from .ingest_support import create_devices, stored_rows, until_projected
from .ingest_support import ingest as ingest  # fixture
from .ingest_support import registry as registry  # fixture
from .ingest_support import telemetry as telemetry  # fixture
from .ingest_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform

DEVICES = 200
PER_DEVICE = 100
TOTAL = DEVICES * PER_DEVICE


async def publish_all(bus: NATS, devices: list[str]) -> None:
    js = bus.jetstream()
    for i in range(PER_DEVICE):
        await asyncio.gather(*(js.publish(f"muster.v1.devices.{d}.telemetry",
                                          orjson.dumps({"metrics": {"n": i, "dev": d}}), timeout=30)
                               for d in devices))


async def test_kill_9_mid_run_loses_and_duplicates_nothing(
        platform: RunningPlatform, registry: grpc.aio.Channel, telemetry: object, tenant: TenantTokens,
        bus: NATS) -> None:
    devices = await create_devices(registry, tenant, DEVICES)
    await until_projected(telemetry, tenant, devices, timeout=60)  # type: ignore[arg-type]
    victim = int(platform.pids()["services"]["ingest"])
    publishing = asyncio.create_task(publish_all(bus, devices))

    deadline = time.monotonic() + 120
    while (await stored_rows(platform, devices))[0] < TOTAL // 5:  # 2 rows per message: ~10% of messages
        assert time.monotonic() < deadline, "ingest stored nothing"
        await asyncio.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    killed_at = (await stored_rows(platform, devices))[0] // 2
    await publishing

    deadline = time.monotonic() + 180
    while (await stored_rows(platform, devices))[0] < 2 * TOTAL and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # anything redelivered late would show up as extra rows now
    rows, keys = await stored_rows(platform, devices)
    assert not alive(victim)
    assert int(platform.pids()["services"]["ingest"]) != victim
    assert killed_at < TOTAL, "the kill came after everything was stored: not a mid-run crash"
    assert (rows, keys) == (2 * TOTAL, 2 * TOTAL), f"killed after {killed_at} messages"
