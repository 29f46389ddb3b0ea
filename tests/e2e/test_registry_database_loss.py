"""When PostgreSQL drops the registry's sessions (a restart, a failover), callers see UNAVAILABLE, a code
they may retry, never INTERNAL, and the service recovers by itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest
from helpers import RPC_TIMEOUT, TenantTokens, bearer, error_reason, superuser_db_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from muster.registry.v1 import device_service_pb2 as dev

from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import create_device
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

pytestmark = pytest.mark.platform


async def test_lost_database_sessions_answer_unavailable_then_recover(
        platform: Any, devices: Devices, tenant: TenantTokens) -> None:
    device = await create_device(devices, tenant.operator, display_name="survivor")
    md = bearer(tenant.viewer)
    for _ in range(5):  # warm several pooled connections
        await devices.GetDevice(dev.GetDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    superuser = create_async_engine(superuser_db_url(platform))
    try:
        async with superuser.connect() as conn:
            killed = (await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'muster_registry'"
            ))).scalar_one()
    finally:
        await superuser.dispose()
    assert killed > 0
    # GetDevice reads on its own single-statement pool, ListDevices through a unit of work: both recover.
    async def call(method: str) -> None:
        if method == "GetDevice":
            await devices.GetDevice(dev.GetDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
        else:
            await devices.ListDevices(dev.ListDevicesRequest(), metadata=md, timeout=RPC_TIMEOUT)

    for method in ("GetDevice", "ListDevices"):
        codes = []
        for _ in range(5):
            try:
                await call(method)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.UNAVAILABLE, (method, error.details())
                assert error_reason(error) == "DATABASE_UNAVAILABLE"
                codes.append(error.code())
        assert codes[-1] is grpc.StatusCode.OK, (method, codes)
