"""Reconciliation with the server end to end: NATS's disconnect advisory is a core message, so a device
that disconnects while no twin replica listens is never announced; at startup the twin compares the
sessions it believes open with the server's CONNZ and closes the missed one as NOT_CONNECTED.

The twin process is SIGKILLed (no goodbye) and restarted by the launcher's supervisor, as in production.
Real NATS (JetStream + MQTT, system account), PostgreSQL, twin."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest
from platform_fixture import RunningPlatform, alive

from muster.twin.v1 import connectivity_service_pb2 as pb
from muster.twin.v1 import events_pb2 as tev

from .connectivity_support import log_of, until
from .edge_support import connected
from .twin_support import TwinStub, twin_device
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


async def _gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"twin {pid} still alive after SIGKILL"
        await asyncio.sleep(0.02)


async def test_a_disconnect_missed_while_the_twin_was_down_is_closed_at_startup(
        platform: RunningPlatform, twins: TwinStub, twin_channel: grpc.aio.Channel) -> None:
    device, stays = await twin_device(platform, twins), await twin_device(platform, twins)
    async with connected(platform, stays.device):
        async with connected(platform, device.device):
            online = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_ONLINE)
            await until(twin_channel, stays, lambda c: c.presence == tev.PRESENCE_ONLINE)
            victim = int(platform.pids()["services"]["twin"])
            os.kill(victim, signal.SIGKILL)
            await _gone(victim)
        # a clean DISCONNECT (so no will either) while nothing listens to the advisories
        closed = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_OFFLINE, timeout=60)
        assert int(platform.pids()["services"]["twin"]) != victim
        # the same reconciliation left the device that is still connected alone
        still = await until(twin_channel, stays, lambda c: True)
        assert still.presence == tev.PRESENCE_ONLINE and not still.session.HasField("disconnect_time")
    assert closed.reason == "not_connected" and closed.session.session_id == online.session.session_id
    assert closed.session.disconnect_reason == pb.DISCONNECT_REASON_NOT_CONNECTED
    log = await log_of(twin_channel, device)
    assert [e.kind for e in log] == [pb.CONNECTION_EVENT_KIND_DISCONNECTED, pb.CONNECTION_EVENT_KIND_CONNECTED]
    assert log[0].reason == pb.DISCONNECT_REASON_NOT_CONNECTED and log[0].detail == "not connected at reconciliation"
