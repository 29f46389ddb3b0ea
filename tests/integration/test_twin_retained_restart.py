"""What the twin relies on for devices that were offline: a retained `twin/desired` published through the
platform's MQTT login survives a NATS restart and reaches a device that subscribes only afterwards
(real nats-server with the launcher's config; the retained messages reload in the background, so a
device that subscribes in the first moment after the restart may need to ask again, or use twin/get)."""

from __future__ import annotations

import asyncio
import time

import pytest

from muster.runtime.device_publisher import DevicePublisher

from .test_device_publisher import Server, _subscriber
from .test_device_publisher import publisher as publisher  # fixture
from .test_device_publisher import server as server  # fixture

pytestmark = pytest.mark.platform

TOPIC = "muster/v1/devices/d7/twin/desired"


async def test_a_retained_desired_state_survives_a_nats_restart(server: Server, publisher: DevicePublisher) -> None:
    await publisher.publish("d7", "twin/desired", b'{"version": 3, "state": {"led": "blue"}}', retain=True)
    server.stop()
    server.start()
    await server.ready()
    restarted = time.monotonic()
    payload = None
    while payload is None and time.monotonic() - restarted < 20:
        connection, received = await _subscriber(server, TOPIC)
        try:
            _, payload = await asyncio.wait_for(received.get(), 2)
        except TimeoutError:
            await asyncio.sleep(0.2)
        finally:
            await connection.disconnect()
    assert payload == b'{"version": 3, "state": {"led": "blue"}}'
