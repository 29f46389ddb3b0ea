"""Registry repositories and unit of work against the real PostgreSQL, as the service's own role."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import unique_id
from sqlalchemy import select

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.db import Scope
from muster.runtime.errors import Aborted, AlreadyExists, InvalidArgument
from muster.runtime.filtering import matches
from muster.runtime.listing import Listing
from muster.runtime.pagination import PageTokens, compare_keysets
from services.registry import listings
from services.registry.domain import Device, DeviceState, Location, Site, Tenant, new_device_id
from services.registry.tables import infrastructure
from services.registry.unit_of_work import RegistryUnitOfWork

from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAGES = PageTokens(b"integration-test-page-secret-000")


@pytest.fixture
async def tenant(uow: Callable[[Scope], RegistryUnitOfWork]) -> str:
    tenant_id = unique_id()
    async with uow(Scope.platform_wide()) as work:
        await work.tenants.add(Tenant(tenant_id, "Repository test", T0, T0))
        await work.commit()
    return tenant_id


def _device(tenant: str, minute: int = 0, **fields: Any) -> Device:
    at = T0 + timedelta(minutes=minute)
    return Device(tenant_id=tenant, id=new_device_id(), create_time=at, update_time=at, **fields)


async def _add(uow: Callable[[Scope], RegistryUnitOfWork], tenant: str, *items: Site | Device) -> None:
    async with uow(Scope.of_tenant(tenant)) as work:
        for item in items:
            if isinstance(item, Site):
                await work.sites.add(item)
            else:
                await work.devices.add(item)
        await work.commit()


# --- round trips -------------------------------------------------------------------------------------

async def test_tenant_round_trip_update_and_remove(uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> None:
    async with uow(Scope.platform_wide()) as work:
        stored = await work.tenants.get(tenant)
        assert stored == Tenant(tenant, "Repository test", T0, T0, 1)
        await work.tenants.save(Tenant(tenant, "Renamed", T0, T0 + timedelta(1), 2), expected_version=1)
        await work.commit()
    async with uow(Scope.of_tenant(tenant)) as work:
        assert await work.tenants.get(tenant) == Tenant(tenant, "Renamed", T0, T0 + timedelta(1), 2)
        assert await work.tenants.owns_anything(tenant) is False
    async with uow(Scope.platform_wide()) as work:
        await work.tenants.remove(tenant)
        await work.commit()
    async with uow(Scope.platform_wide()) as work:
        assert await work.tenants.get(tenant) is None


async def test_duplicate_tenant_is_already_exists_and_the_transaction_stays_usable(
        uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> None:
    async with uow(Scope.platform_wide()) as work:
        with pytest.raises(AlreadyExists):
            await work.tenants.add(Tenant(tenant, "again", T0, T0))
        assert (await work.tenants.get(tenant)) is not None  # savepoint rolled back, not the transaction


async def test_site_round_trips_every_field(uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> None:
    site = Site(tenant_id=tenant, id="plant-1", display_name="Plant 1", address="1 Main St", time_zone="Europe/Berlin",
                location=Location(52.52, 13.405, 34.5), labels={"env": "prod", "floor": "3"},
                create_time=T0, update_time=T0)
    await _add(uow, tenant, site)
    async with uow(Scope.of_tenant(tenant)) as work:
        assert await work.sites.get("plant-1") == site
        assert await work.tenants.owns_anything(tenant) is True
        with pytest.raises(AlreadyExists):
            await work.sites.add(site)


async def test_site_save_with_expected_version_and_stale_save_is_aborted(
        uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> None:
    site = Site(tenant_id=tenant, id="plant-1", display_name="v1", create_time=T0, update_time=T0)
    await _add(uow, tenant, site)
    v2 = Site(tenant_id=tenant, id="plant-1", display_name="v2", location=None, labels={"a": "b"},
              create_time=T0, update_time=T0 + timedelta(1), version=2)
    async with uow(Scope.of_tenant(tenant)) as work:
        await work.sites.save(v2, expected_version=1)
        await work.commit()
    async with uow(Scope.of_tenant(tenant)) as work:
        with pytest.raises(Aborted):
            await work.sites.save(v2, expected_version=1)
        assert await work.sites.get("plant-1") == v2


async def test_device_round_trips_every_field(uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> None:
    site = Site(tenant_id=tenant, id="plant-1", display_name="Plant", create_time=T0, update_time=T0)
    device = _device(tenant, display_name="Pump 7", site_id="plant-1", labels={"env": "prod"}, serial="SN-1",
                     notes="line 1\nline 2", location=Location(-33.9, 151.2), state=DeviceState.SUSPENDED,
                     version=4)
    bare = _device(tenant, 1)
    await _add(uow, tenant, site, device, bare)
    async with uow(Scope.of_tenant(tenant)) as work:
        assert await work.devices.get(device.id) == device
        assert await work.devices.get(bare.id) == bare
        assert await work.devices.count_at_site("plant-1") == 1


async def test_device_integrity_errors_map_to_api_errors(uow: Callable[[Scope], RegistryUnitOfWork],
                                                         tenant: str) -> None:
    await _add(uow, tenant, _device(tenant, serial="SN-1"))
    async with uow(Scope.of_tenant(tenant)) as work:
        with pytest.raises(AlreadyExists) as serial:
            await work.devices.add(_device(tenant, serial="SN-1"))
        assert serial.value.reason == "SERIAL_EXISTS"
        with pytest.raises(InvalidArgument) as site:
            await work.devices.add(_device(tenant, site_id="no-such-site"))
        assert site.value.violations[0].field == "device.site"
        await work.devices.add(_device(tenant, serial=""))  # blank serials never collide
        await work.devices.add(_device(tenant, serial=""))
        await work.commit()


async def test_device_save_and_concurrent_writer_loses(uow: Callable[[Scope], RegistryUnitOfWork],
                                                       tenant: str) -> None:
    device = _device(tenant, display_name="v1")
    await _add(uow, tenant, device)
    first = Device(**{**device.__dict__, "display_name": "first", "version": 2})
    second = Device(**{**device.__dict__, "display_name": "second", "version": 2})
    async with uow(Scope.of_tenant(tenant)) as a, uow(Scope.of_tenant(tenant)) as b:
        assert (await a.devices.get(device.id)) == (await b.devices.get(device.id)) == device
        await a.devices.save(first, expected_version=1)
        await a.commit()
        with pytest.raises(Aborted):
            await b.devices.save(second, expected_version=1)
    async with uow(Scope.of_tenant(tenant)) as work:
        assert (await work.devices.get(device.id)) == first


# --- unit of work: state and events commit together ------------------------------------------------

async def _outbox_for(uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> list[str]:
    outbox = infrastructure.outbox
    async with uow(Scope.of_tenant(tenant)) as work:
        rows = await work.connection.execute(select(outbox.c.type).where(outbox.c.tenant_id == tenant)
                                             .order_by(outbox.c.seq))
        return [r.type for r in rows]


async def test_commit_writes_the_change_and_its_event_together(uow: Callable[[Scope], RegistryUnitOfWork],
                                                               tenant: str) -> None:
    device = _device(tenant)
    async with uow(Scope.of_tenant(tenant)) as work:
        await work.devices.add(device)
        work.emit(ev.DeviceCreated(), subject=device.name)
        await work.commit()
    assert await _outbox_for(uow, tenant) == ["DeviceCreated"]


async def test_unit_of_work_left_without_commit_keeps_neither_change_nor_event(
        uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> None:
    device = _device(tenant)
    with pytest.raises(RuntimeError, match="handler failed"):
        async with uow(Scope.of_tenant(tenant)) as work:
            await work.devices.add(device)
            work.emit(ev.DeviceCreated(), subject=device.name)
            raise RuntimeError("handler failed")
    async with uow(Scope.of_tenant(tenant)) as work:
        assert await work.devices.get(device.id) is None
    assert await _outbox_for(uow, tenant) == []


# --- listing: SQL agrees with the in-memory semantics the fakes use --------------------------------

FILTERS = [
    "",
    'labels.env = "prod"',
    'labels.env != "prod"',
    "labels.env:*",
    "state = ACTIVE",
    "state != DEVICE_STATE_ACTIVE",
    'site = "sites/plant-1"',
    'NOT site = "sites/plant-1"',
    'display_name = "pump*"',
    'display_name > "pump-3" OR serial = "S-2"',
    'create_time >= "2026-03-01T12:03:00Z" AND create_time < "2026-03-01T12:07:00+00:00"',
    '(state = PROVISIONED OR state = SUSPENDED) AND NOT labels.env = "dev"',
]
ORDERS = ["", "display_name desc", "serial, create_time desc", "update_time desc"]


@pytest.fixture
async def fleet(uow: Callable[[Scope], RegistryUnitOfWork], tenant: str) -> list[Device]:
    site = Site(tenant_id=tenant, id="plant-1", display_name="Plant", create_time=T0, update_time=T0)
    devices = [
        _device(tenant, i, display_name=name, serial=serial, site_id="plant-1" if i % 3 == 0 else None,
                labels=labels, state=state)
        for i, (name, serial, labels, state) in enumerate([
            ("pump-1", "S-1", {"env": "prod"}, DeviceState.ACTIVE),
            ("pump-2", "", {"env": "dev"}, DeviceState.PROVISIONED),
            ("pump-3", "S-2", {}, DeviceState.SUSPENDED),
            ("valve", "", {"env": "prod", "floor": "2"}, DeviceState.ACTIVE),
            ("pump-4", "S-3", {"env": "dev"}, DeviceState.RETIRED),
            ("", "", {}, DeviceState.PROVISIONED),
            ("pump-5", "S-4", {"env": "prod"}, DeviceState.PROVISIONED),
            ("valve", "S-5", {}, DeviceState.SUSPENDED),
            ("pump-1", "", {"env": "qa"}, DeviceState.ACTIVE),
        ])
    ]
    await _add(uow, tenant, site, *devices)
    return devices


def _record(d: Device) -> dict[str, Any]:
    return {"display_name": d.display_name, "serial": d.serial, "site": d.site_id, "state": int(d.state),
            "labels": dict(d.labels), "create_time": d.create_time, "update_time": d.update_time}


@pytest.mark.parametrize("order_by", ORDERS)
@pytest.mark.parametrize("filter_text", FILTERS)
async def test_sql_listing_matches_in_memory_semantics_page_by_page(
        uow: Callable[[Scope], RegistryUnitOfWork], tenant: str, fleet: list[Device],
        filter_text: str, order_by: str) -> None:
    first = listings.DEVICES.page(PAGES, filter_text=filter_text, order_by=order_by, size=2, token="", scope=tenant)

    def key(d: Device) -> list[Any]:
        return [getattr(d, t.field) for t in first.order] + [d.id]

    def compare(a: Device, b: Device) -> int:
        return compare_keysets(first.order, key(a), key(b))

    expected = sorted((d for d in fleet if matches(first.filter, _record(d))), key=functools.cmp_to_key(compare))
    walked: list[str] = []
    token = ""
    async with uow(Scope.of_tenant(tenant)) as work:
        while True:
            page = listings.DEVICES.page(PAGES, filter_text=filter_text, order_by=order_by, size=2, token=token,
                                         scope=tenant)
            rows = await work.devices.list(page)
            items, token = Listing.finish(PAGES, page, rows, key)
            walked.extend(d.id for d in items)
            if not token:
                break
    assert walked == [d.id for d in expected]
