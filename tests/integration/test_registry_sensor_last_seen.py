"""Ingest's `LatestTelemetryChanged` events applied to the registry's real sensors, as the registry's
own role: sensors move forward in time only, no sensor is created, another tenant's event touches
nothing, and neither update_time nor the version (etag) changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.struct_pb2 import Value
from helpers import unique_id

from muster.ingest.v1 import events_pb2 as iev
from muster.runtime.db import Database, Scope
from muster.runtime.events import new_event
from services.registry.domain import Device, Tenant, new_device_id
from services.registry.telemetry_consumer import apply_event
from services.registry.templates import MetricType, Sensor

from .registry_db_support import UowFactory
from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def changed(tenant: str, device: str, **readings: tuple[datetime, Value]) -> object:
    entry = iev.DeviceLatestTelemetry(device=f"devices/{device}")
    for metric, (at, value) in readings.items():
        r = entry.readings.add(metric=metric, value=value)
        r.time.FromDatetime(at)
    return new_event(iev.LatestTelemetryChanged(devices=[entry]), source="ingest", tenant=tenant,
                     subject=f"tenants/{tenant}")


async def apply(db: Database, event: object) -> None:
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_event(event, conn)  # type: ignore[arg-type]


async def sensor(uow: UowFactory, tenant: str, device: str, key: str) -> Sensor | None:
    async with uow(Scope.of_tenant(tenant)) as work:
        return await work.sensors.get(device, key)


async def test_sensors_move_forward_only_and_none_is_created(db: Database, uow: UowFactory) -> None:
    tenant, other, device = unique_id("lt-a"), unique_id("lt-b"), new_device_id()
    async with uow(Scope.platform_wide()) as work:
        for t in (tenant, other):
            await work.tenants.add(Tenant(t, t, T0, T0))
        await work.commit()
    async with uow(Scope.of_tenant(tenant)) as work:
        await work.devices.add(Device(tenant_id=tenant, id=device, create_time=T0, update_time=T0))
        await work.sensors.add(Sensor(tenant_id=tenant, device_id=device, key="temp", type=MetricType.NUMBER,
                                      create_time=T0, update_time=T0))
        await work.commit()
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)

    await apply(db, changed(tenant, device, temp=(t2, Value(number_value=21.5)),
                            humidity=(t2, Value(number_value=40.0))))
    moved = await sensor(uow, tenant, device, "temp")
    assert moved is not None and (moved.last_value, moved.last_seen) == (21.5, t2)
    assert (moved.update_time, moved.version) == (T0, 1)
    assert await sensor(uow, tenant, device, "humidity") is None

    await apply(db, changed(tenant, device, temp=(t1, Value(number_value=-5.0))))  # older, arriving late
    await apply(db, changed(other, device, temp=(t2 + timedelta(hours=1), Value(number_value=99.0))))  # wrong tenant
    kept = await sensor(uow, tenant, device, "temp")
    assert kept is not None and (kept.last_value, kept.last_seen) == (21.5, t2)

    await apply(db, changed(tenant, device, temp=(t2 + timedelta(seconds=1), Value(string_value="n/a"))))
    newer = await sensor(uow, tenant, device, "temp")
    assert newer is not None and (newer.last_value, newer.last_seen) == ("n/a", t2 + timedelta(seconds=1))
