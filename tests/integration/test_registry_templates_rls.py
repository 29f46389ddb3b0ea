"""Templates and sensors in the real PostgreSQL, as the registry's own role: row-level security lets
every tenant read the system templates (tenant_id '') but write only its own rows, even with raw SQL;
tenant A never sees tenant B's templates or sensors; repositories round-trip every field; and the
migrations match the tables (`alembic check`)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers import PlatformLike, owner_db_url, unique_id
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.db import Database, Scope
from muster.runtime.errors import FailedPrecondition
from muster.runtime.listing import Page
from services.registry.domain import Device, Tenant, new_device_id
from services.registry.modules import Module
from services.registry.templates import (
    SYSTEM_TENANT,
    CommandDefinition,
    DeviceTemplate,
    MetricDefinition,
    MetricType,
    Sensor,
    SlotDefinition,
    new_template_id,
)

from .registry_db_support import UowFactory
from .registry_db_support import db as db  # fixture
from .registry_db_support import uow as uow  # fixture

pytestmark = pytest.mark.platform

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVERYTHING = Page(filter=None, order=(), after=None, limit=500, fingerprint="")


@dataclass(frozen=True)
class World:
    a: str
    b: str
    system: str
    a_template: str
    b_template: str
    a_device: str
    b_device: str


def _template(tenant: str, **fields: object) -> DeviceTemplate:
    return DeviceTemplate(tenant_id=tenant, id=new_template_id(), display_name="T", create_time=T0, update_time=T0,
                          **fields)  # type: ignore[arg-type]


@pytest.fixture
async def world(uow: UowFactory) -> World:
    a, b = unique_id("tpl-a"), unique_id("tpl-b")
    system = _template(SYSTEM_TENANT, category="pump")
    async with uow(Scope.platform_wide()) as work:
        for tenant in (a, b):
            await work.tenants.add(Tenant(tenant, tenant, T0, T0))
        await work.templates.add(system)
        work.emit(ev.TemplateCreated(), subject=system.name)  # a platform event: outbox tenant_id ''
        await work.commit()
    made: dict[str, tuple[str, str]] = {}
    for tenant in (a, b):
        template = _template(tenant)
        device = Device(tenant_id=tenant, id=new_device_id(), template_id=system.id, create_time=T0, update_time=T0)
        async with uow(Scope.of_tenant(tenant)) as work:
            await work.templates.add(template)
            await work.devices.add(device)
            await work.sensors.add(Sensor(tenant_id=tenant, device_id=device.id, key="flow", type=MetricType.NUMBER,
                                          create_time=T0, update_time=T0))
            await work.modules.add(Module(tenant_id=tenant, device_id=device.id, id="io-1", slot="io",
                                          template_id=template.id, metric_key_map={"port_3_temp": "temperature"},
                                          create_time=T0, update_time=T0))
            await work.commit()
        made[tenant] = (template.id, device.id)
    return World(a, b, system.id, made[a][0], made[b][0], made[a][1], made[b][1])


async def _ids(db: Database, scope: Scope, sql: str) -> set[str]:
    async with db.transaction(scope) as conn:
        return {row[0] for row in (await conn.execute(text(sql))).all()}


async def test_a_tenant_reads_its_own_and_the_system_templates_only(db: Database, world: World) -> None:
    seen = await _ids(db, Scope.of_tenant(world.a), "SELECT id FROM registry.templates")
    assert {world.system, world.a_template} <= seen and world.b_template not in seen
    owners = await _ids(db, Scope.of_tenant(world.a), "SELECT DISTINCT tenant_id FROM registry.templates")
    assert owners <= {world.a, SYSTEM_TENANT}


@pytest.mark.parametrize("table", ["sensors", "modules"])
async def test_a_tenant_never_sees_another_tenants_sensors_or_modules(db: Database, world: World,
                                                                      table: str) -> None:
    devices = await _ids(db, Scope.of_tenant(world.a), f"SELECT device_id FROM registry.{table}")  # noqa: S608
    assert devices == {world.a_device}


async def test_modules_round_trip_and_count(uow: UowFactory, world: World) -> None:
    async with uow(Scope.of_tenant(world.a)) as work:
        module = await work.modules.get(world.a_device, "io-1")
        assert module is not None and dict(module.metric_key_map) == {"port_3_temp": "temperature"}
        assert module.template_id == world.a_template
        assert await work.modules.count_in_slot(world.a_device, "io") == 1
        assert await work.modules.count_with_template(world.a_template) == 1
        assert await work.modules.count_with_template(world.b_template) == 0  # invisible, not counted


async def test_system_rows_need_a_scope_even_on_a_connection_that_had_one(db: Database, world: World) -> None:
    async with db.engine.connect() as conn:
        async with conn.begin():  # a scoped transaction leaves the setting at '' (not NULL) afterwards
            await conn.execute(text("SELECT set_config('muster.tenant_id', :t, true)"), {"t": world.a})
            assert (await conn.execute(text("SELECT count(*) FROM registry.templates WHERE id = :id"),
                                       {"id": world.system})).scalar_one() == 1
        async with conn.begin():
            for table in ("templates", "outbox"):  # system templates and their (tenant-less) events
                count = (await conn.execute(text(
                    f"SELECT count(*) FROM registry.{table} WHERE tenant_id = ''"))).scalar_one()  # noqa: S608
                assert count == 0, f"registry.{table} shows platform rows without a scope"


@pytest.mark.parametrize("statement", [
    "UPDATE registry.templates SET display_name = 'hijacked' WHERE id = :id",
    "DELETE FROM registry.templates WHERE id = :id",
])
async def test_raw_sql_cannot_change_a_system_template_from_a_tenant_scope(db: Database, world: World,
                                                                           statement: str) -> None:
    async with db.transaction(Scope.of_tenant(world.a)) as conn:
        result = await conn.execute(text(statement), {"id": world.system})
        assert result.rowcount == 0
    async with db.transaction(Scope.of_tenant(world.b)) as conn:
        name = (await conn.execute(text("SELECT display_name FROM registry.templates WHERE id = :id"),
                                   {"id": world.system})).scalar_one()
    assert name == "T"


@pytest.mark.parametrize("owner", ["", "other"])
async def test_raw_sql_cannot_insert_a_system_or_foreign_template(db: Database, world: World, owner: str) -> None:
    with pytest.raises(ProgrammingError) as caught:
        async with db.transaction(Scope.of_tenant(world.a)) as conn:
            await conn.execute(text(
                "INSERT INTO registry.templates (id, tenant_id, display_name, create_time, update_time, version) "
                "VALUES (:id, :tenant, 'x', now(), now(), 1)"), {"id": new_template_id(),
                                                                 "tenant": world.b if owner else ""})
    assert isinstance(caught.value.orig.__cause__, asyncpg.InsufficientPrivilegeError)  # type: ignore[union-attr]


async def test_a_tenant_cannot_update_another_tenants_template(db: Database, world: World) -> None:
    async with db.transaction(Scope.of_tenant(world.a)) as conn:
        result = await conn.execute(text("UPDATE registry.templates SET model = 'x' WHERE id = :id"),
                                    {"id": world.b_template})
        assert result.rowcount == 0


async def test_platform_scope_writes_system_templates(uow: UowFactory, world: World) -> None:
    async with uow(Scope.platform_wide()) as work:
        current = await work.templates.get(world.system)
        assert current is not None
        await work.templates.save(DeviceTemplate(**{**current.__dict__, "model": "v2", "version": 2}), 1)
        await work.commit()
    async with uow(Scope.of_tenant(world.b)) as work:
        seen = await work.templates.get(world.system)
        assert seen is not None and seen.model == "v2"
        assert [t.id for t in await work.templates.list(EVERYTHING) if t.id == world.system] == [world.system]


async def test_templates_and_sensors_round_trip_every_field(uow: UowFactory, world: World) -> None:
    template = _template(world.a, slug="cr-5", category="pump", manufacturer="Grundfos", model="CR 5", metrics=(
        MetricDefinition("pressure", MetricType.NUMBER, "bar", -1.5, 16.0, True),
        MetricDefinition("on", MetricType.BOOL)), commands=(
        CommandDefinition("set_speed", {"type": "object", "properties": {"rpm": {"type": "number"}}},
                          timedelta(seconds=30)), CommandDefinition("reboot")),
        slots=(SlotDefinition("expansion", ("io-module",), 2),))
    async with uow(Scope.of_tenant(world.a)) as work:
        await work.templates.add(template)
        await work.commit()
    async with uow(Scope.of_tenant(world.a)) as work:
        assert await work.templates.get(template.id) == template
        sensor = await work.sensors.get(world.a_device, "flow")
        assert sensor is not None and (sensor.enabled, sensor.last_value, sensor.last_seen) == (True, None, None)
        assert await work.sensors.keys(world.a_device) == {"flow"}
        assert await work.devices.count_with_template(world.system) == 1  # only its own device counts


async def test_a_used_template_cannot_be_removed_and_a_device_delete_drops_its_sensors(
        uow: UowFactory, world: World) -> None:
    async with uow(Scope.platform_wide()) as work:
        assert await work.devices.count_with_template(world.system) == 2
        with pytest.raises(FailedPrecondition):
            await work.templates.remove(world.system)
    async with uow(Scope.of_tenant(world.a)) as work:
        await work.devices.remove(world.a_device)
        await work.commit()
    async with uow(Scope.of_tenant(world.a)) as work:
        assert await work.sensors.keys(world.a_device) == set()
        assert await work.modules.get(world.a_device, "io-1") is None


def test_migrations_match_the_tables(platform: PlatformLike) -> None:
    env = {**os.environ, "MUSTER_MIGRATION_URL": owner_db_url(platform), "MUSTER_SERVICE_ROLE": "muster_registry"}
    done = subprocess.run([sys.executable, "-m", "muster.runtime.migrations", "check", "--service", "registry"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
