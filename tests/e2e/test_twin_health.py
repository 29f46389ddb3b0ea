"""Device health end to end: a real MQTT client's heartbeat becomes the device's latest health with a
derived status; a malformed heartbeat is answered on the device's errors topic and changes nothing."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from helpers import PlatformLike

from muster.twin.v1 import connectivity_service_pb2 as pb

from .connectivity_support import health
from .edge_support import connected
from .twin_support import TwinStub, next_json, twin_device
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


async def test_a_heartbeat_is_the_latest_health_with_its_status(platform: PlatformLike, twins: TwinStub,
                                                                 twin_channel: grpc.aio.Channel) -> None:
    device = await twin_device(platform, twins)
    assert (await health(twin_channel, device)).status == pb.HEALTH_STATUS_UNKNOWN
    async with connected(platform, device.device) as mqtt:
        await mqtt.publish(device.topic("heartbeat"), b'{"battery": 15, "rssi": -60, "uptime": 3600}', qos=1)
        deadline = time.monotonic() + 15
        while (latest := await health(twin_channel, device)).status == pb.HEALTH_STATUS_UNKNOWN:
            assert time.monotonic() < deadline, "the heartbeat never arrived"
            await asyncio.sleep(0.1)
    assert latest.status == pb.HEALTH_STATUS_DEGRADED and list(latest.findings) == ["battery 15 below 20 (degraded)"]
    assert latest.battery == 15 and latest.rssi == -60 and latest.uptime == 3600
    assert not latest.HasField("cpu") and latest.HasField("report_time")


async def test_a_malformed_heartbeat_is_answered_on_the_errors_topic(platform: PlatformLike, twins: TwinStub,
                                                                      twin_channel: grpc.aio.Channel) -> None:
    device = await twin_device(platform, twins)
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("errors"), qos=1)
        await mqtt.publish(device.topic("heartbeat"), b'{"battery": "full"}', qos=1)
        error = await next_json(mqtt, device.topic("errors"), timeout=15)
    assert error["code"] == "INVALID_VALUE" and error["topic"] == device.topic("heartbeat")
    assert "battery" in error["message"]
    assert (await health(twin_channel, device)).status == pb.HEALTH_STATUS_UNKNOWN
