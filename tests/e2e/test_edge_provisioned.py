"""The device edge with the real registry: a device that provisioned itself through REST connects over
MQTT with the secret it got, and an operator's secret rotation (no grace) cuts it and retires the old
secret — registry outbox -> JetStream -> the edge's projection -> kick, all real."""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import httpx
import pytest
from helpers import PlatformLike, TenantTokens

from .edge_support import EdgeDevice, connected, refused
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import tenant as tenant  # fixture
from .rest_support import auth
from .rest_support import http as http  # fixture
from .test_provisioning_rest import create_token, register

pytestmark = pytest.mark.platform


async def test_a_self_registered_device_connects_and_a_rotation_kicks_it(
        http: httpx.AsyncClient, tenant: TenantTokens, platform: PlatformLike) -> None:
    token = await create_token(http, tenant.admin)
    response = await register(http, token["secret"], "SN-EDGE-1")
    assert response.status_code == 200, response.text
    body = response.json()
    device = EdgeDevice(id=body["device_id"], tenant=tenant.id, secret=body["device_secret"])
    assert body["mqtt"]["username"] == device.id

    async with connected(platform, device) as mqtt:
        await mqtt.subscribe(f"{body['mqtt']['topic_prefix']}errors", qos=1)
        rotated = await http.post(f"/v1/devices/{device.id}:rotateSecret", json={}, headers=auth(tenant.operator))
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["device_secret"]
        started = time.monotonic()
        with pytest.raises(aiomqtt.MqttError):
            async with asyncio.timeout(5.0):
                async for _ in mqtt.messages:
                    pass
        assert time.monotonic() - started < 5.0
    assert await refused(platform, device.id, device.secret)
    async with connected(platform, device, secret=new_secret):
        pass
