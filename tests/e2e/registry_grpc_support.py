"""What the registry gRPC end-to-end tests share: a channel to the running registry (fixture `channel`),
the platform admin token, a fresh tenant with its tokens per test, the service stubs, and shortcuts.

Test modules import the fixtures under their own names, e.g.
`from .registry_grpc_support import channel as channel  # fixture`: pytest finds fixtures by name in the test
module, and the redundant alias tells linters the import is used."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, TenantTokens, bearer, create_tenant

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2_grpc as site_grpc

Code = grpc.StatusCode


if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi
    Devices = dev_grpc.DeviceServiceAsyncStub
    Sites = site_grpc.SiteServiceAsyncStub


@pytest.fixture(scope="module")
async def channel(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["registry"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@pytest.fixture(scope="module")
def admin_token(platform: PlatformLike) -> str:
    return str(platform.endpoints["admin_token"])


@pytest.fixture
async def tenant(channel: grpc.aio.Channel, admin_token: str) -> TenantTokens:
    return await create_tenant(channel, admin_token)


@pytest.fixture
def devices(channel: grpc.aio.Channel) -> Devices:
    return dev_grpc.DeviceServiceStub(channel)


@pytest.fixture
def sites(channel: grpc.aio.Channel) -> Sites:
    return site_grpc.SiteServiceStub(channel)


async def create_device(devices: Devices, token: str, **fields: object) -> pb.Device:
    return await devices.CreateDevice(dev.CreateDeviceRequest(device=pb.Device(**fields)),  # type: ignore[arg-type]
                                      metadata=bearer(token), timeout=RPC_TIMEOUT)


async def fails(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value
