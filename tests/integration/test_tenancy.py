"""Row-level security as the registry's own role: one tenant's transaction never sees or writes
another's rows, even with no WHERE clause at all, and the role cannot switch the protection off."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from helpers import SERVICE_ROLE, unique_id
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.db import Database, Scope
from services.registry.domain import Device, Site, Tenant, new_device_id
from services.registry.tables import TENANT_OWNED
from services.registry.unit_of_work import unit_of_work_factory

from .registry_db_support import db as db  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TwoTenants:
    a: str
    b: str
    a_devices: frozenset[str]
    b_devices: frozenset[str]


@pytest.fixture
async def tenants(db: Database) -> TwoTenants:
    """Two tenants with a site, two devices and outbox events each, written through the service's own code."""
    uow = unit_of_work_factory(db, asyncio.Event())
    a, b = unique_id("rls-a"), unique_id("rls-b")
    devices: dict[str, frozenset[str]] = {}
    async with uow(Scope.platform_wide()) as work:
        for tenant in (a, b):
            await work.tenants.add(Tenant(tenant, tenant, T0, T0))
        await work.commit()
    for tenant in (a, b):
        async with uow(Scope.of_tenant(tenant)) as work:
            await work.sites.add(Site(tenant_id=tenant, id="plant-1", display_name="Plant", create_time=T0,
                                      update_time=T0))
            ids = frozenset(new_device_id() for _ in range(2))
            for device_id in ids:
                await work.devices.add(Device(tenant_id=tenant, id=device_id, site_id="plant-1", create_time=T0,
                                              update_time=T0))
                work.emit(ev.DeviceCreated(), subject=f"devices/{device_id}")
            await work.commit()
        devices[tenant] = ids
    return TwoTenants(a, b, devices[a], devices[b])


async def _rows(conn: AsyncConnection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in (await conn.execute(text(sql))).all()]


async def test_tenant_scope_sees_only_its_own_rows_without_any_where_clause(db: Database,
                                                                           tenants: TwoTenants) -> None:
    async with db.transaction(Scope.of_tenant(tenants.a)) as conn:
        devices = await _rows(conn, "SELECT id, tenant_id FROM registry.devices")
        sites = await _rows(conn, "SELECT id, tenant_id FROM registry.sites")
        visible_tenants = await _rows(conn, "SELECT tenant_id FROM registry.tenants")
        outbox = await _rows(conn, "SELECT tenant_id FROM registry.outbox")
    assert {device_id for device_id, _ in devices} == tenants.a_devices
    assert {tenant for _, tenant in devices} == {tenants.a}
    assert sites == [("plant-1", tenants.a)]
    assert visible_tenants == [(tenants.a,)]
    assert outbox and {tenant for (tenant,) in outbox} == {tenants.a}


async def test_other_tenants_rows_are_invisible_even_when_asked_for_by_id(db: Database,
                                                                         tenants: TwoTenants) -> None:
    theirs = sorted(tenants.b_devices)
    async with db.transaction(Scope.of_tenant(tenants.a)) as conn:
        found = await conn.execute(text("SELECT count(*) FROM registry.devices WHERE id = ANY(:ids)"),
                                   {"ids": theirs})
        assert found.scalar_one() == 0
        updated = await conn.execute(text("UPDATE registry.devices SET display_name = 'pwned' WHERE id = ANY(:ids)"),
                                     {"ids": theirs})
        deleted = await conn.execute(text("DELETE FROM registry.devices WHERE tenant_id = :b"), {"b": tenants.b})
        assert (updated.rowcount, deleted.rowcount) == (0, 0)
    async with db.transaction(Scope.of_tenant(tenants.b)) as conn:
        names = await _rows(conn, "SELECT display_name FROM registry.devices")
    assert sorted(names) == [("",), ("",)]


@pytest.mark.parametrize("statement", [
    "INSERT INTO registry.devices (id, tenant_id, state, create_time, update_time, version) "
    "VALUES (:id, :b, 1, now(), now(), 1)",
    "INSERT INTO registry.sites (tenant_id, id, display_name, create_time, update_time, version) "
    "VALUES (:b, :id, 'x', now(), now(), 1)",
    "INSERT INTO registry.outbox (id, tenant_id, type, subject, nats_subject, payload) "
    "VALUES (gen_random_uuid(), :b, 'DeviceCreated', 'devices/x', 'muster.events.registry.x.DeviceCreated', '')",
    "UPDATE registry.devices SET tenant_id = :b",
])
async def test_writing_a_row_for_another_tenant_violates_the_policy(db: Database, tenants: TwoTenants,
                                                                    statement: str) -> None:
    with pytest.raises(ProgrammingError) as caught:
        async with db.transaction(Scope.of_tenant(tenants.a)) as conn:
            await conn.execute(text(statement), {"b": tenants.b, "id": new_device_id()})
    assert "row-level security" in str(caught.value)
    assert isinstance(caught.value.orig.__cause__, asyncpg.InsufficientPrivilegeError)  # type: ignore[union-attr]


async def test_a_connection_with_no_scope_sees_nothing(db: Database, tenants: TwoTenants) -> None:
    async with db.engine.connect() as conn:  # no apply_scope: neither a tenant nor platform
        for table in TENANT_OWNED:
            count = (await conn.execute(text(f"SELECT count(*) FROM registry.{table}"))).scalar_one()  # noqa: S608
            assert count == 0, f"registry.{table} leaks {count} rows without a scope"


async def test_scope_is_transaction_local_and_does_not_leak_to_the_next_transaction(
        db: Database, tenants: TwoTenants) -> None:
    async with db.engine.connect() as conn:
        async with conn.begin():
            await conn.execute(text("SELECT set_config('muster.tenant_id', :t, true)"), {"t": tenants.a})
            assert (await conn.execute(text("SELECT count(*) FROM registry.devices"))).scalar_one() == 2
        async with conn.begin():
            assert (await conn.execute(text("SELECT count(*) FROM registry.devices"))).scalar_one() == 0


async def test_platform_scope_sees_every_tenant(db: Database, tenants: TwoTenants) -> None:
    async with db.transaction(Scope.platform_wide()) as conn:
        rows = await conn.execute(text("SELECT id FROM registry.devices WHERE tenant_id IN (:a, :b)"),
                                  {"a": tenants.a, "b": tenants.b})
        assert {r.id for r in rows} == tenants.a_devices | tenants.b_devices


async def test_service_role_is_not_owner_not_superuser_and_cannot_bypass_rls(db: Database) -> None:
    async with db.engine.connect() as conn:
        me = (await conn.execute(text(
            "SELECT current_user, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb "
            "FROM pg_roles WHERE rolname = current_user"))).one()
        assert tuple(me) == (SERVICE_ROLE, False, False, False, False)
        tables = (await conn.execute(text(
            "SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'registry' AND c.relname = ANY(:names)"), {"names": list(TENANT_OWNED)})).all()
        assert {t.relname for t in tables} == set(TENANT_OWNED)
        for table in tables:
            assert table[1] != SERVICE_ROLE, f"{table.relname} is owned by the service role"
            assert table.relrowsecurity and table.relforcerowsecurity, f"RLS is off on {table.relname}"
        owner_member = (await conn.execute(text(
            "SELECT pg_has_role(current_user, pg_get_userbyid(c.relowner), 'MEMBER') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'registry' AND c.relname = 'devices'"
        ))).scalar_one()
        assert owner_member is False


@pytest.mark.parametrize("statement", [
    "ALTER TABLE registry.devices DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE registry.devices NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON registry.devices",
    "SET ROLE muster_owner",
    "CREATE TABLE registry.sneaky (id int)",
])
async def test_service_role_cannot_switch_the_protection_off(db: Database, statement: str) -> None:
    with pytest.raises(DBAPIError) as caught:
        async with db.engine.begin() as conn:
            await conn.execute(text(statement))
    assert isinstance(caught.value.orig.__cause__, asyncpg.InsufficientPrivilegeError)  # type: ignore[union-attr]
