"""Bulk import's set-at-a-time statements against the real PostgreSQL, as the registry's own role:
the one-statement inserts (`insert_rows`) keep every column, row-level security still refuses
another tenant's rows, and the serial lookup stays within the tenant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from helpers import unique_id
from sqlalchemy.exc import DBAPIError

from muster.runtime.db import Scope
from services.registry.bulk_repository import BatchConflict
from services.registry.domain import Device, Location, Tenant, new_device_id
from services.registry.templates import MetricType, Sensor

from .registry_db_support import UowFactory
from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _tenant(uow: UowFactory) -> str:
    tenant_id = unique_id()
    async with uow(Scope.platform_wide()) as work:
        await work.tenants.add(Tenant(tenant_id, "Bulk repository test", T0, T0))
        await work.commit()
    return tenant_id


def _device(tenant: str, serial: str, **fields: object) -> Device:
    return Device(tenant_id=tenant, id=new_device_id(), serial=serial, create_time=T0, update_time=T0,
                  **fields)  # type: ignore[arg-type]


async def test_inserted_devices_and_sensors_read_back_column_for_column(uow: UowFactory) -> None:
    tenant = await _tenant(uow)
    bare = _device(tenant, "SN-bare")
    full = _device(tenant, "SN-full", display_name="pump, \"north\"", labels={"floor": "3", "kind": "pump"},
                   notes="line 1\nline 2", location=Location(52.5, 13.4, 34.5))
    sensor = Sensor(tenant_id=tenant, device_id=full.id, key="pressure", type=MetricType.NUMBER, unit="bar",
                    label="Pressure", enabled=True, create_time=T0, update_time=T0)
    async with uow(Scope.of_tenant(tenant)) as work:
        await work.bulk.insert_devices([bare, full])
        await work.bulk.insert_sensors([sensor])
        await work.commit()
    async with uow(Scope.of_tenant(tenant)) as work:
        assert await work.devices.get(bare.id) == bare
        assert await work.devices.get(full.id) == full
        assert await work.bulk.sensor_keys([full.id, bare.id]) == {full.id: {"pressure"}, bare.id: set()}


async def test_rows_for_another_tenant_are_refused_by_row_level_security(uow: UowFactory) -> None:
    mine, other = await _tenant(uow), await _tenant(uow)
    async with uow(Scope.of_tenant(mine)) as work:
        with pytest.raises(DBAPIError, match="row-level security"):
            await work.bulk.insert_devices([_device(mine, "SN-1"), _device(other, "SN-2")])
    async with uow(Scope.of_tenant(other)) as work:
        assert await work.bulk.by_serials({"SN-1", "SN-2"}) == {}
    async with uow(Scope.of_tenant(mine)) as work:
        assert await work.bulk.by_serials({"SN-1", "SN-2"}) == {}  # nothing of the statement was kept


async def test_serial_lookup_finds_only_the_own_tenants_devices(uow: UowFactory) -> None:
    mine, other = await _tenant(uow), await _tenant(uow)
    own = _device(mine, "SN-shared")
    for tenant, device in ((mine, own), (other, _device(other, "SN-shared"))):
        async with uow(Scope.of_tenant(tenant)) as work:
            await work.bulk.insert_devices([device])
            await work.commit()
    async with uow(Scope.of_tenant(mine)) as work:
        assert await work.bulk.by_serials({"SN-shared", "SN-missing"}) == {"SN-shared": own}


async def test_a_serial_already_taken_makes_the_batch_a_conflict(uow: UowFactory) -> None:
    tenant = await _tenant(uow)
    async with uow(Scope.of_tenant(tenant)) as work:
        await work.bulk.insert_devices([_device(tenant, "SN-1")])
        await work.commit()
    async with uow(Scope.of_tenant(tenant)) as work:
        with pytest.raises(BatchConflict):
            await work.bulk.insert_devices([_device(tenant, "SN-2"), _device(tenant, "SN-1")])
