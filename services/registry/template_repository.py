"""Persistence of device templates and sensors (SQL only here and in repository.py).

Row-level security decides visibility: a tenant-scoped transaction reads its own templates and the
system ones (tenant_id = '') but can write only its own; see migration 0002 for the policies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Row,
    Text,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from muster.runtime.listing import Page
from services.registry import tables
from services.registry.modules import Module
from services.registry.repository import _page, _stale
from services.registry.templates import (
    SYSTEM_TENANT,
    CommandDefinition,
    DeviceTemplate,
    LastSeen,
    MetricDefinition,
    MetricType,
    Sensor,
    SlotDefinition,
)


def _metric_json(m: MetricDefinition) -> dict[str, Any]:
    return {"key": m.key, "type": int(m.type or 0), "unit": m.unit, "min": m.min, "max": m.max,
            "required": m.required}


def _metric(d: Mapping[str, Any]) -> MetricDefinition:
    return MetricDefinition(key=d["key"], type=MetricType(d["type"]), unit=d.get("unit", ""), min=d.get("min"),
                            max=d.get("max"), required=bool(d.get("required", False)))


def _command_json(c: CommandDefinition) -> dict[str, Any]:
    timeout = c.default_timeout.total_seconds() if c.default_timeout is not None else None
    return {"name": c.name, "parameters": dict(c.parameters), "default_timeout_seconds": timeout}


def _command(d: Mapping[str, Any]) -> CommandDefinition:
    seconds = d.get("default_timeout_seconds")
    return CommandDefinition(name=d["name"], parameters=d.get("parameters") or {},
                             default_timeout=timedelta(seconds=seconds) if seconds is not None else None)


def _slot_json(s: SlotDefinition) -> dict[str, Any]:
    return {"name": s.name, "accepted_templates": list(s.accepted_templates), "max_devices": s.max_devices}


def _slot(d: Mapping[str, Any]) -> SlotDefinition:
    return SlotDefinition(name=d["name"], accepted_templates=tuple(d.get("accepted_templates", ())),
                          max_devices=int(d.get("max_devices", 0)))


class TemplateRepository:
    t = tables.templates
    columns: Mapping[str, ColumnElement[Any]] = {
        "display_name": t.c.display_name, "slug": t.c.slug, "category": t.c.category,
        "manufacturer": t.c.manufacturer, "model": t.c.model,
        "source": case((t.c.tenant_id == literal(SYSTEM_TENANT), 1), else_=2),
        "create_time": t.c.create_time, "update_time": t.c.update_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> DeviceTemplate:
        return DeviceTemplate(
            tenant_id=row.tenant_id, id=row.id, display_name=row.display_name, slug=row.slug, category=row.category,
            manufacturer=row.manufacturer, model=row.model, metrics=tuple(_metric(m) for m in row.metrics),
            commands=tuple(_command(c) for c in row.commands), slots=tuple(_slot(s) for s in row.slots),
            create_time=row.create_time, update_time=row.update_time, version=row.version)

    @staticmethod
    def _values(template: DeviceTemplate) -> dict[str, Any]:
        return {"display_name": template.display_name, "slug": template.slug, "category": template.category,
                "manufacturer": template.manufacturer, "model": template.model,
                "metrics": [_metric_json(m) for m in template.metrics],
                "commands": [_command_json(c) for c in template.commands],
                "slots": [_slot_json(s) for s in template.slots],
                "update_time": template.update_time, "version": template.version}

    async def get(self, template_id: str) -> DeviceTemplate | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.id == template_id))).first()
        return self._from_row(row) if row else None

    async def add(self, template: DeviceTemplate) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    id=template.id, tenant_id=template.tenant_id, create_time=template.create_time,
                    **self._values(template)))
        except IntegrityError as exc:
            raise AlreadyExists(f"template {template.id!r} already exists", reason="TEMPLATE_EXISTS") from exc

    async def save(self, template: DeviceTemplate, expected_version: int) -> None:
        result = await self._conn.execute(
            update(self.t).where(self.t.c.id == template.id, self.t.c.version == expected_version)
            .values(**self._values(template)))
        if result.rowcount != 1:
            raise _stale(template.name, expected_version)

    async def remove(self, template_id: str) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(delete(self.t).where(self.t.c.id == template_id))
        except IntegrityError as exc:  # a device started using it after the handler counted
            raise FailedPrecondition(f"devices use templates/{template_id}: give them another template first",
                                     reason="TEMPLATE_IN_USE") from exc

    async def list(self, query: Page, *, system_only: bool = False) -> list[DeviceTemplate]:
        where = [self.t.c.tenant_id == SYSTEM_TENANT] if system_only else []
        rows = await _page(self._conn, self.t, self.columns, self.t.c.id, query, *where)
        return [self._from_row(r) for r in rows]


_RECORD_LAST_SEEN = text("""
UPDATE registry.sensors s SET last_value = v.value::jsonb, last_seen = v.seen
FROM unnest(:devices, :keys, :values, :seen) AS v(device_id, key, value, seen)
WHERE s.tenant_id = :tenant AND s.device_id = v.device_id AND s.key = v.key
  AND (s.last_seen IS NULL OR s.last_seen < v.seen)
""").bindparams(bindparam("devices", type_=ARRAY(Text)), bindparam("keys", type_=ARRAY(Text)),
                bindparam("values", type_=ARRAY(Text)), bindparam("seen", type_=ARRAY(DateTime(timezone=True))))
"""Only existing sensors of the tenant, only forward in time; update_time and version stay (no etag change)."""


class SensorRepository:
    t = tables.sensors
    columns: Mapping[str, ColumnElement[Any]] = {
        "key": t.c.key, "unit": t.c.unit, "label": t.c.label, "type": t.c.type, "enabled": t.c.enabled,
        "create_time": t.c.create_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def record_last_seen(self, tenant: str, entries: Sequence[LastSeen]) -> int:
        """Move the tenant's existing sensors forward to these readings; returns how many moved."""
        if not entries:
            return 0
        params: dict[str, Any] = {"tenant": tenant, "devices": [e.device_id for e in entries],
                                  "keys": [e.key for e in entries], "values": [e.value_json for e in entries],
                                  "seen": [e.seen for e in entries]}
        result = await self._conn.execute(_RECORD_LAST_SEEN, params)
        return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def _from_row(row: Row[Any]) -> Sensor:
        return Sensor(tenant_id=row.tenant_id, device_id=row.device_id, key=row.key, type=MetricType(row.type),
                      unit=row.unit, label=row.label, enabled=row.enabled, last_value=row.last_value,
                      last_seen=row.last_seen, create_time=row.create_time, update_time=row.update_time,
                      version=row.version)

    async def get(self, device_id: str, key: str) -> Sensor | None:
        row = (await self._conn.execute(
            select(self.t).where(self.t.c.device_id == device_id, self.t.c.key == key))).first()
        return self._from_row(row) if row else None

    async def keys(self, device_id: str) -> set[str]:
        rows = await self._conn.execute(select(self.t.c.key).where(self.t.c.device_id == device_id))
        return {r.key for r in rows}

    async def add(self, sensor: Sensor) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    tenant_id=sensor.tenant_id, device_id=sensor.device_id, key=sensor.key,
                    type=int(sensor.type or 0), unit=sensor.unit, label=sensor.label, enabled=sensor.enabled,
                    create_time=sensor.create_time, update_time=sensor.update_time, version=sensor.version))
        except IntegrityError as exc:
            raise AlreadyExists(f"{sensor.name} already exists", reason="SENSOR_EXISTS") from exc

    async def save(self, sensor: Sensor, expected_version: int) -> None:
        result = await self._conn.execute(
            update(self.t).where(self.t.c.device_id == sensor.device_id, self.t.c.key == sensor.key,
                                 self.t.c.version == expected_version)
            .values(unit=sensor.unit, label=sensor.label, enabled=sensor.enabled, update_time=sensor.update_time,
                    version=sensor.version))
        if result.rowcount != 1:
            raise _stale(sensor.name, expected_version)

    async def remove(self, device_id: str, key: str) -> None:
        await self._conn.execute(delete(self.t).where(self.t.c.device_id == device_id, self.t.c.key == key))

    async def list(self, device_id: str, query: Page) -> list[Sensor]:
        rows = await _page(self._conn, self.t, self.columns, self.t.c.key, query, self.t.c.device_id == device_id)
        return [self._from_row(r) for r in rows]


class ModuleRepository:
    t = tables.modules
    columns: Mapping[str, ColumnElement[Any]] = {
        "slot": t.c.slot, "template": t.c.template_id, "serial": t.c.serial, "label": t.c.label,
        "create_time": t.c.create_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> Module:
        return Module(tenant_id=row.tenant_id, device_id=row.device_id, id=row.id, slot=row.slot,
                      template_id=row.template_id, serial=row.serial, label=row.label,
                      metric_key_map=row.metric_key_map, create_time=row.create_time, update_time=row.update_time,
                      version=row.version)

    async def get(self, device_id: str, module_id: str) -> Module | None:
        row = (await self._conn.execute(
            select(self.t).where(self.t.c.device_id == device_id, self.t.c.id == module_id))).first()
        return self._from_row(row) if row else None

    async def add(self, module: Module) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    tenant_id=module.tenant_id, device_id=module.device_id, id=module.id, slot=module.slot,
                    template_id=module.template_id, serial=module.serial, label=module.label,
                    metric_key_map=dict(module.metric_key_map), create_time=module.create_time,
                    update_time=module.update_time, version=module.version))
        except IntegrityError as exc:
            if "template" in str(exc.orig):
                raise InvalidArgument.field("module.template",
                                            f"template templates/{module.template_id} does not exist") from exc
            raise AlreadyExists(f"{module.name} already exists", reason="MODULE_EXISTS") from exc

    async def save(self, module: Module, expected_version: int) -> None:
        result = await self._conn.execute(
            update(self.t).where(self.t.c.device_id == module.device_id, self.t.c.id == module.id,
                                 self.t.c.version == expected_version)
            .values(serial=module.serial, label=module.label, metric_key_map=dict(module.metric_key_map),
                    update_time=module.update_time, version=module.version))
        if result.rowcount != 1:
            raise _stale(module.name, expected_version)

    async def remove(self, device_id: str, module_id: str) -> None:
        await self._conn.execute(delete(self.t).where(self.t.c.device_id == device_id, self.t.c.id == module_id))

    async def list(self, device_id: str, query: Page) -> list[Module]:
        rows = await _page(self._conn, self.t, self.columns, self.t.c.id, query, self.t.c.device_id == device_id)
        return [self._from_row(r) for r in rows]

    async def count_in_slot(self, device_id: str, slot: str) -> int:
        stmt = select(func.count()).select_from(self.t).where(self.t.c.device_id == device_id, self.t.c.slot == slot)
        return int((await self._conn.execute(stmt)).scalar_one())

    async def count_with_template(self, template_id: str) -> int:
        stmt = select(func.count()).select_from(self.t).where(self.t.c.template_id == template_id)
        return int((await self._conn.execute(stmt)).scalar_one())
