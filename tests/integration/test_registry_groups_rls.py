"""Groups, memberships and SIM (ICCID) rows in the real PostgreSQL, as the registry's own role:
row-level security hides another tenant's rows even from raw SQL; the composite foreign keys refuse a
membership joining one tenant's group to another tenant's device; deleting a device drops its
memberships and SIM rows; the repositories round-trip every field; and a device is found by ICCID."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from helpers import unique_id
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from muster.runtime.db import Database, Scope
from muster.runtime.errors import AlreadyExists
from muster.runtime.listing import Page
from services.registry.domain import Device, Tenant, new_device_id
from services.registry.groups import Group, GroupType
from services.registry.transport_repository import IccidIndex
from services.registry.transports import Cellular, Lora, Protocol, Serial, SerialStandard, Transport, Wifi, luhn_valid

from .registry_db_support import UowFactory
from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVERYTHING = Page(filter=None, order=(), after=None, limit=500, fingerprint="")


def _new_iccid() -> str:
    """A valid ICCID no other test uses (the same SIM in two tenants is allowed, but platform-wide
    lookups here must find only this world's devices)."""
    body = "89" + "".join(secrets.choice(string.digits) for _ in range(17))
    return next(body + d for d in string.digits if luhn_valid(body + d))


@dataclass(frozen=True)
class World:
    a: str
    b: str
    a_device: str
    b_device: str
    sim: str


@pytest.fixture
async def world(uow: UowFactory) -> World:
    a, b = unique_id("grp-a"), unique_id("grp-b")
    async with uow(Scope.platform_wide()) as work:
        for tenant in (a, b):
            await work.tenants.add(Tenant(tenant, tenant, T0, T0))
        await work.commit()
    devices: dict[str, str] = {}
    sim = _new_iccid()
    for tenant in (a, b):
        device = Device(tenant_id=tenant, id=new_device_id(), create_time=T0, update_time=T0,
                        transports=(Transport(Protocol.MQTT, Cellular(iccid=sim)),))
        async with uow(Scope.of_tenant(tenant)) as work:
            await work.devices.add(device)
            await work.groups.add(Group(tenant_id=tenant, id="line-1", display_name=tenant, create_time=T0,
                                        update_time=T0))
            await work.groups.add_members(tenant, "line-1", [device.id], T0)
            await work.commit()
        devices[tenant] = device.id
    return World(a, b, devices[a], devices[b], sim)


async def _rows(db: Database, scope: Scope, sql: str) -> list[tuple[object, ...]]:
    async with db.transaction(scope) as conn:
        return [tuple(row) for row in (await conn.execute(text(sql))).all()]


@pytest.mark.parametrize(("table", "column"), [("groups", "display_name"), ("group_members", "device_id"),
                                               ("device_iccids", "device_id")])
async def test_raw_sql_sees_only_the_scopes_tenant(db: Database, world: World, table: str, column: str) -> None:
    seen = await _rows(db, Scope.of_tenant(world.a), f"SELECT tenant_id, {column} FROM registry.{table}")  # noqa: S608
    assert {row[0] for row in seen} == {world.a}
    assert {row[1] for row in seen} == ({world.a} if table == "groups" else {world.a_device})


async def test_a_membership_cannot_join_another_tenants_device(db: Database, world: World) -> None:
    with pytest.raises(DBAPIError):  # RLS's WITH CHECK for B's tenant_id, the foreign key for A's
        async with db.transaction(Scope.of_tenant(world.a)) as conn:
            await conn.execute(text("INSERT INTO registry.group_members (tenant_id, group_id, device_id, create_time) "
                                    "VALUES (:t, 'line-1', :d, now())"), {"t": world.a, "d": world.b_device})


async def test_the_repository_never_finds_another_tenants_device_for_a_membership(uow: UowFactory,
                                                                                  world: World) -> None:
    async with uow(Scope.of_tenant(world.a)) as work:
        assert await work.groups.existing_devices([world.a_device, world.b_device]) == {world.a_device}
        members = await work.groups.list_members("line-1", EVERYTHING)
        assert [d.id for d in members] == [world.a_device]
        assert [g.id for g in await work.groups.list(EVERYTHING, member=world.b_device)] == []


async def test_memberships_and_sims_go_with_their_device(uow: UowFactory, db: Database, world: World) -> None:
    async with uow(Scope.of_tenant(world.a)) as work:
        await work.devices.remove(world.a_device)
        await work.commit()
    for table in ("group_members", "device_iccids"):
        assert await _rows(db, Scope.of_tenant(world.a), f"SELECT device_id FROM registry.{table}") == []  # noqa: S608
    assert len(await _rows(db, Scope.of_tenant(world.b), "SELECT device_id FROM registry.group_members")) == 1


async def test_a_device_is_found_by_iccid_and_a_sim_is_in_one_device_per_tenant(uow: UowFactory,
                                                                                 world: World) -> None:
    async with uow(Scope.of_tenant(world.a)) as work:
        assert await IccidIndex(work.connection).device_for(world.sim) == world.a_device
        twin = Device(tenant_id=world.a, id=new_device_id(), create_time=T0, update_time=T0,
                      transports=(Transport(Protocol.HTTP), Transport(Protocol.MQTT, Cellular(iccid=world.sim))))
        with pytest.raises(AlreadyExists) as caught:
            await work.devices.add(twin)
        assert caught.value.reason == "ICCID_IN_USE" and "transports[1].cellular.iccid" in caught.value.message
        assert world.a_device in caught.value.message
    async with uow(Scope.platform_wide()) as work:  # carrier linking later: any tenant's SIM
        assert await IccidIndex(work.connection).device_for(world.sim) in {world.a_device, world.b_device}


async def test_groups_and_transports_round_trip_every_field(uow: UowFactory, world: World) -> None:
    group = Group(tenant_id=world.a, id="floor-3", display_name="Floor 3", description="d", labels={"team": "ops"},
                  type=GroupType.DYNAMIC, filter='labels.floor = "3"', create_time=T0, update_time=T0)
    transports = (Transport(Protocol.LORAWAN, Lora("0004a30b001c0530", "EU868")),
                  Transport(Protocol.MODBUS_RTU, Serial(SerialStandard.RS485, 9600)),
                  Transport(Protocol.HTTP, Wifi("plant", "00:1a:2b:3c:4d:5e")), Transport(Protocol.COAP))
    async with uow(Scope.of_tenant(world.a)) as work:
        await work.groups.add(group)
        current = await work.devices.get(world.a_device)
        assert current is not None
        await work.devices.save(replace(current, transports=transports, version=2), 1)
        await work.commit()
    async with uow(Scope.of_tenant(world.a)) as work:
        assert await work.groups.get("floor-3") == group
        device = await work.devices.get(world.a_device)
        assert device is not None and device.transports == transports
        assert await IccidIndex(work.connection).device_for(world.sim) is None  # the SIM row went with the transport
