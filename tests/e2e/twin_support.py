"""What the twin end-to-end tests share: devices the registry announced (events on JetStream, as the
registry's relay publishes them) with operator tokens for their tenant, the twin's gRPC stub, and
helpers to wait for the twin and for MQTT messages.

Test modules import the fixtures under their own names (`from .twin_support import twins as twins  # fixture`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiomqtt
import grpc
import orjson
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, bearer, token_codec

from muster.runtime.auth import Role
from muster.twin.v1 import twin_resources_pb2 as pb
from muster.twin.v1 import twin_service_pb2 as svc
from muster.twin.v1 import twin_service_pb2_grpc as svc_grpc

from .edge_support import EdgeDevice, new_device

if TYPE_CHECKING:
    TwinStub = svc_grpc.TwinServiceAsyncStub
else:
    TwinStub = svc_grpc.TwinServiceStub


@dataclass
class TwinDevice:
    device: EdgeDevice
    operator: str
    viewer: str

    @property
    def id(self) -> str:
        return self.device.id

    @property
    def twin(self) -> str:
        return f"devices/{self.device.id}/twin"

    def topic(self, levels: str) -> str:
        return f"muster/v1/devices/{self.device.id}/{levels}"


@pytest.fixture(scope="module")
async def twin_channel(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["twin"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@pytest.fixture
def twins(twin_channel: grpc.aio.Channel) -> TwinStub:
    stub: TwinStub = svc_grpc.TwinServiceStub(twin_channel)
    return stub


def _token(platform: PlatformLike, tenant: str, role: Role) -> str:
    token, _ = token_codec(platform).issue(subject=f"{role.name.lower()}@{tenant}", role=role, tenant=tenant,
                                           ttl=timedelta(hours=1))
    return token


async def twin_device(platform: PlatformLike, twins: TwinStub, timeout: float = 20.0, *,
                      device_id: str | None = None) -> TwinDevice:
    """A new device (DeviceCreated + its secret) and tokens for its tenant, once its twin exists."""
    device = await new_device(platform, device_id=device_id)
    made = TwinDevice(device, _token(platform, device.tenant, Role.OPERATOR),
                      _token(platform, device.tenant, Role.VIEWER))
    deadline = time.monotonic() + timeout
    while True:
        try:
            await get_twin(twins, made)
            return made
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def get_twin(twins: TwinStub, device: TwinDevice) -> pb.Twin:
    return await twins.GetTwin(svc.GetTwinRequest(name=device.twin), metadata=bearer(device.viewer),
                               timeout=RPC_TIMEOUT)


async def update_desired(twins: TwinStub, device: TwinDevice, patch: dict[str, Any], etag: str = "") -> pb.Twin:
    request = svc.UpdateDesiredRequest(name=device.twin, etag=etag, force=not etag)
    request.patch.update(patch)
    return await twins.UpdateDesired(request, metadata=bearer(device.operator), timeout=RPC_TIMEOUT)


async def until_twin(twins: TwinStub, device: TwinDevice, done: Callable[[pb.Twin], bool],
                     timeout: float = 10.0) -> pb.Twin:
    deadline = time.monotonic() + timeout
    while True:
        twin = await get_twin(twins, device)
        if done(twin):
            return twin
        if time.monotonic() > deadline:
            raise AssertionError(f"twin never reached the expected state; last: {twin}")
        await asyncio.sleep(0.05)


async def next_json(mqtt: aiomqtt.Client, topic: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next message on `topic` (others are skipped), decoded."""
    async with asyncio.timeout(timeout):
        async for message in mqtt.messages:
            if message.topic.matches(topic):
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                data: dict[str, Any] = orjson.loads(payload)
                return data
    raise AssertionError(f"no message on {topic}")
