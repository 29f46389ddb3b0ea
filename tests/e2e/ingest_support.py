"""What the ingest end-to-end tests share: channels to the registry and ingest, a NATS connection as a
platform user (device auth arrives with the edge; publishing on the device subjects as a platform user
exercises the same capture streams), devices the projection already knows, and row counts.

Test modules import the fixtures under their own names (`from .ingest_support import x as x  # fixture`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import nats
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, TenantTokens, bearer, create_tenant, owner_db_url, secrets
from nats.aio.client import Client as NATS

from muster.ingest.v1 import telemetry_service_pb2 as tel
from muster.ingest.v1 import telemetry_service_pb2_grpc as tel_grpc
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb

if TYPE_CHECKING:
    Telemetry = tel_grpc.TelemetryServiceAsyncStub


@pytest.fixture(scope="module")
async def registry(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["registry"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@pytest.fixture(scope="module")
async def ingest(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["ingest"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@pytest.fixture
def telemetry(ingest: grpc.aio.Channel) -> Telemetry:
    return tel_grpc.TelemetryServiceStub(ingest)


@pytest.fixture
async def tenant(registry: grpc.aio.Channel, platform: PlatformLike) -> TenantTokens:
    return await create_tenant(registry, str(platform.endpoints["admin_token"]))


@pytest.fixture
async def bus(platform: PlatformLike) -> AsyncIterator[NATS]:
    password = secrets(platform)["nats"]["services"]["ingest"]
    host = str(platform.endpoints["nats"]).removeprefix("nats://")
    nc = await nats.connect(f"nats://muster_ingest:{password}@{host}")
    yield nc
    await nc.close()


async def create_devices(registry: grpc.aio.Channel, tenant: TenantTokens, count: int, **fields: Any) -> list[str]:
    stub = dev_grpc.DeviceServiceStub(registry)
    created = await asyncio.gather(*(
        stub.CreateDevice(dev.CreateDeviceRequest(device=pb.Device(display_name=f"d{i}", **fields)),
                          metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT) for i in range(count)))
    return [d.name.removeprefix("devices/") for d in created]


async def until_projected(telemetry: Telemetry, tenant: TenantTokens, device_ids: list[str],
                          timeout: float = 20.0) -> None:
    """Wait until ingest's projection knows every device (its queries stop answering NOT_FOUND)."""
    deadline = time.monotonic() + timeout
    for device_id in device_ids:
        while True:
            try:
                await telemetry.ListLatestTelemetry(tel.ListLatestTelemetryRequest(device=f"devices/{device_id}"),
                                                    metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def stored_rows(platform: PlatformLike, device_ids: list[str]) -> tuple[int, int]:
    """(rows, distinct (stream_seq, idx) keys) stored for these devices, read as the schema owner."""
    conn = await asyncpg.connect(owner_db_url(platform).replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('muster.platform', 'on', true)")
            row = await conn.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT (stream_seq, idx)) AS k FROM ingest.telemetry "
                "WHERE device_id = ANY($1::text[])", device_ids)
    finally:
        await conn.close()
    return int(row["n"]), int(row["k"])
