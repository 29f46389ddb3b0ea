"""Heartbeat history end to end: a real MQTT client's heartbeats reach both readers of the heartbeat
stream: ingest keeps every one as telemetry (`health.<field>`, queryable and paginated) while the twin
shows the latest as the device's health. Real NATS (JetStream + MQTT), PostgreSQL, ingest, twin."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, bearer

from muster.ingest.v1 import telemetry_service_pb2 as tel
from muster.ingest.v1 import telemetry_service_pb2_grpc as tel_grpc
from muster.twin.v1 import connectivity_service_pb2 as pb

from .connectivity_support import health
from .edge_support import connected
from .twin_support import TwinDevice, TwinStub, twin_device
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
async def ingest(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["ingest"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


async def health_points(ingest: grpc.aio.Channel, device: TwinDevice, expected: int,
                        timeout: float = 20.0) -> list[tel.TelemetryPoint]:
    """Every `health.*` point of the device, read one per page, once `expected` are there."""
    stub = tel_grpc.TelemetryServiceStub(ingest)
    deadline = time.monotonic() + timeout
    while True:
        points: list[tel.TelemetryPoint] = []
        token = ""
        while True:
            response = await stub.QueryTelemetry(
                tel.QueryTelemetryRequest(device=f"devices/{device.id}", metrics=["health.battery", "health.rssi"],
                                          page_size=1, page_token=token),
                metadata=bearer(device.viewer), timeout=RPC_TIMEOUT)
            points += response.points
            token = response.next_page_token
            if not token:
                break
        if len(points) >= expected or time.monotonic() > deadline:
            return points
        await asyncio.sleep(0.2)


async def test_heartbeats_are_kept_as_health_telemetry_and_the_twin_shows_the_latest(
        platform: PlatformLike, twins: TwinStub, twin_channel: grpc.aio.Channel, ingest: grpc.aio.Channel) -> None:
    device = await twin_device(platform, twins, device_id=uuid.uuid4().hex[:20])  # registry-shaped: ingest's queries
    async with connected(platform, device.device) as mqtt:
        await mqtt.publish(device.topic("heartbeat"), b'{"battery": 81, "rssi": -67, "uptime": 60}', qos=1)
        await mqtt.publish(device.topic("heartbeat"), b'{"battery": "full"}', qos=1)  # refused by both readers
        await mqtt.publish(device.topic("heartbeat"), b'{"battery": 79, "cpu": 5}', qos=1)
        points = await health_points(ingest, device, expected=3)
    assert [(p.metric, p.value.number_value) for p in points] == [
        ("health.battery", 81.0), ("health.rssi", -67.0), ("health.battery", 79.0)]
    assert points[0].time == points[1].time and points[2].time.ToDatetime() > points[0].time.ToDatetime()
    deadline = time.monotonic() + 15
    while (latest := await health(twin_channel, device)).battery != 79:
        assert time.monotonic() < deadline, f"the twin never showed the latest heartbeat: {latest}"
        await asyncio.sleep(0.1)
    assert latest.status == pb.HEALTH_STATUS_OK and latest.cpu == 5 and not latest.HasField("rssi")
