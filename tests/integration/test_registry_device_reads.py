"""The registry's one-round-trip device reads (muster.runtime.scoped_reads) on the real PostgreSQL as the
service role: the same Device as the unit of work reads, row-level security still decides what a scope
sees, and the scope does not outlive the statement on the pooled connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest
from helpers import PlatformLike, service_db_url, unique_id

from muster.runtime.db import Scope
from muster.runtime.scoped_reads import ScopedReader, asyncpg_url, scoped_sql
from services.registry.device_reads import SqlDeviceReads
from services.registry.domain import Device, DeviceState, Location, Site, Tenant, new_device_id
from services.registry.transports import Ethernet, Protocol, Transport
from services.registry.unit_of_work import RegistryUnitOfWork

from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(platform: PlatformLike) -> AsyncIterator[asyncpg.Pool]:
    """One connection, so every read (and the check after it) runs on the same session."""
    reader = await ScopedReader.connect(service_db_url(platform), pool_size=1)
    yield reader.pool
    await reader.close()


async def _tenant_with_device(uow: Callable[[Scope], RegistryUnitOfWork], **fields: object) -> Device:
    tenant = unique_id()
    async with uow(Scope.platform_wide()) as work:
        await work.tenants.add(Tenant(tenant, "Reads test", T0, T0))
        await work.commit()
    device = Device(tenant_id=tenant, id=new_device_id(), create_time=T0, update_time=T0, **fields)  # type: ignore[arg-type]
    async with uow(Scope.of_tenant(tenant)) as work:
        await work.sites.add(Site(tenant_id=tenant, id="plant-1", display_name="Plant", create_time=T0, update_time=T0))
        await work.devices.add(device)
        await work.commit()
    return device


async def test_a_device_reads_back_as_the_unit_of_work_reads_it(uow: Callable[[Scope], RegistryUnitOfWork],
                                                                pool: asyncpg.Pool) -> None:
    device = await _tenant_with_device(
        uow, display_name="Pump 7", site_id="plant-1", labels={"env": "prod"}, serial="SN-1", notes="n",
        location=Location(-33.9, 151.2), state=DeviceState.SUSPENDED, template_id=None, version=3,
        transports=(Transport(protocol=Protocol.MQTT, link=Ethernet(mac_address="00:11:22:33:44:55")),))
    reads = SqlDeviceReads(ScopedReader(pool))
    async with uow(Scope.of_tenant(device.tenant_id)) as work:
        assert await reads.get(Scope.of_tenant(device.tenant_id), device.id) == await work.devices.get(device.id)
    assert await reads.get(Scope.of_tenant(device.tenant_id), device.id) == device
    assert await reads.get(Scope.of_tenant(device.tenant_id), "no-such-device") is None


async def test_row_level_security_decides_what_each_scope_reads(uow: Callable[[Scope], RegistryUnitOfWork],
                                                                 pool: asyncpg.Pool) -> None:
    mine = await _tenant_with_device(uow)
    other = await _tenant_with_device(uow)
    reads = SqlDeviceReads(ScopedReader(pool))
    assert await reads.get(Scope.of_tenant(mine.tenant_id), other.id) is None  # another tenant's id: nothing
    assert await reads.get(Scope.platform_wide(), other.id) == other
    assert await reads.get(Scope(tenant=None), mine.id) is None  # no tenant, not platform: nothing
    async with pool.acquire() as conn:  # the read's settings ended with its statement
        assert await conn.fetchval("SELECT current_setting('muster.tenant_id', true)") in ("", None)
        assert await conn.fetchval("SELECT current_setting('muster.platform', true)") in ("", None, "off")


async def test_a_raw_scoped_statement_sees_only_its_tenant(uow: Callable[[Scope], RegistryUnitOfWork],
                                                          pool: asyncpg.Pool) -> None:
    a = await _tenant_with_device(uow)
    await _tenant_with_device(uow)
    reader = ScopedReader(pool)
    row = await reader.fetchrow(Scope.of_tenant(a.tenant_id), "SELECT count(*) AS n, min(tenant_id) AS t "
                                                                 "FROM registry.devices")
    assert row is not None and (row["n"], row["t"]) == (1, a.tenant_id)


def test_scoped_sql_numbers_the_scope_after_the_query_parameters() -> None:
    sql = scoped_sql("SELECT * FROM t WHERE a = $1 AND b = $2", 2)
    assert "set_config('muster.tenant_id', $3, true)" in sql and "set_config('muster.platform', $4, true)" in sql
    with pytest.raises(ValueError, match=r"\$3"):
        scoped_sql("SELECT * FROM t WHERE a = $3", 2)
    assert asyncpg_url("postgresql+asyncpg://u:p@h:1/d") == "postgresql://u:p@h:1/d"
