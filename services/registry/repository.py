"""Registry persistence: SQL lives here and nowhere else in the service.

Each repository works on the connection of the unit of work that owns it, so everything a handler
does in one unit of work commits (with its events) or rolls back together. Row-level security
limits every statement to the unit of work's tenant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.errors import Aborted, AlreadyExists, InvalidArgument
from muster.runtime.filtering import to_sql
from muster.runtime.listing import Page
from muster.runtime.pagination import keyset_condition, order_clauses
from services.registry import tables
from services.registry.domain import Device, DeviceState, Location, Site, Tenant, etag_of
from services.registry.transport_repository import IccidIndex, transports_from_json, transports_to_json


def _location(row: Row[Any] | Mapping[Any, Any]) -> Location | None:
    columns = row._mapping if isinstance(row, Row) else row
    if columns["latitude"] is None or columns["longitude"] is None:
        return None
    return Location(columns["latitude"], columns["longitude"], columns["altitude"] or 0.0)


def device_from_columns(r: Mapping[Any, Any]) -> Device:
    """A device from its row's columns by name (a SQLAlchemy row's mapping or an asyncpg record)."""
    return Device(tenant_id=r["tenant_id"], id=r["id"], display_name=r["display_name"], site_id=r["site_id"],
                  labels=r["labels"], serial=r["serial"], notes=r["notes"], location=_location(r),
                  state=DeviceState(r["state"]), template_id=r["template_id"], create_time=r["create_time"],
                  update_time=r["update_time"], version=r["version"],
                  transports=transports_from_json(r["transports"]))


def _location_columns(location: Location | None) -> dict[str, float | None]:
    if location is None:
        return {"latitude": None, "longitude": None, "altitude": None}
    return {"latitude": location.latitude, "longitude": location.longitude, "altitude": location.altitude}


def _stale(resource: str, version: int) -> Aborted:
    return Aborted(f"{resource} was changed concurrently (expected etag {etag_of(version)}): read it again and retry",
                   reason="ETAG_MISMATCH")


async def _page(conn: AsyncConnection, table: Any, columns: Mapping[str, ColumnElement[Any]],
                tiebreak: ColumnElement[Any], query: Page, *where: ColumnElement[bool]) -> Sequence[Row[Any]]:
    stmt = select(table).where(*where)
    if query.filter is not None:
        stmt = stmt.where(to_sql(query.filter, columns))
    if query.after is not None:
        stmt = stmt.where(keyset_condition(query.order, columns, tiebreak, query.after))
    stmt = stmt.order_by(*order_clauses(query.order, columns, tiebreak)).limit(query.fetch)
    return (await conn.execute(stmt)).all()


class TenantRepository:
    t = tables.tenants
    columns: Mapping[str, ColumnElement[Any]] = {
        "display_name": t.c.display_name, "create_time": t.c.create_time, "update_time": t.c.update_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> Tenant:
        return Tenant(id=row.tenant_id, display_name=row.display_name, create_time=row.create_time,
                      update_time=row.update_time, version=row.version)

    async def get(self, tenant_id: str) -> Tenant | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.tenant_id == tenant_id))).first()
        return self._from_row(row) if row else None

    async def add(self, tenant: Tenant) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    tenant_id=tenant.id, display_name=tenant.display_name, create_time=tenant.create_time,
                    update_time=tenant.update_time, version=tenant.version))
        except IntegrityError as exc:
            raise AlreadyExists(f"tenant {tenant.id!r} already exists", reason="TENANT_EXISTS") from exc

    async def save(self, tenant: Tenant, expected_version: int) -> None:
        result = await self._conn.execute(
            update(self.t).where(self.t.c.tenant_id == tenant.id, self.t.c.version == expected_version)
            .values(display_name=tenant.display_name, update_time=tenant.update_time, version=tenant.version))
        if result.rowcount != 1:
            raise _stale(tenant.name, expected_version)

    async def remove(self, tenant_id: str) -> None:
        await self._conn.execute(delete(self.t).where(self.t.c.tenant_id == tenant_id))

    async def list(self, query: Page) -> list[Tenant]:
        rows = await _page(self._conn, self.t, self.columns, self.t.c.tenant_id, query)
        return [self._from_row(r) for r in rows]

    async def owns_anything(self, tenant_id: str) -> bool:
        for table in (tables.sites, tables.devices):
            found = (await self._conn.execute(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id))).scalar_one()
            if found:
                return True
        return False


class SiteRepository:
    t = tables.sites
    columns: Mapping[str, ColumnElement[Any]] = {
        "display_name": t.c.display_name, "time_zone": t.c.time_zone, "labels": t.c.labels,
        "create_time": t.c.create_time, "update_time": t.c.update_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> Site:
        return Site(tenant_id=row.tenant_id, id=row.id, display_name=row.display_name, address=row.address,
                    time_zone=row.time_zone, location=_location(row), labels=row.labels,
                    create_time=row.create_time, update_time=row.update_time, version=row.version)

    @staticmethod
    def _values(site: Site) -> dict[str, Any]:
        return {"display_name": site.display_name, "address": site.address, "time_zone": site.time_zone,
                "labels": dict(site.labels), "update_time": site.update_time, "version": site.version,
                **_location_columns(site.location)}

    async def get(self, site_id: str) -> Site | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.id == site_id))).first()
        return self._from_row(row) if row else None

    async def add(self, site: Site) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    tenant_id=site.tenant_id, id=site.id, create_time=site.create_time, **self._values(site)))
        except IntegrityError as exc:
            raise AlreadyExists(f"site {site.id!r} already exists", reason="SITE_EXISTS") from exc

    async def save(self, site: Site, expected_version: int) -> None:
        result = await self._conn.execute(
            update(self.t).where(self.t.c.id == site.id, self.t.c.version == expected_version)
            .values(**self._values(site)))
        if result.rowcount != 1:
            raise _stale(site.name, expected_version)

    async def remove(self, site_id: str) -> None:
        await self._conn.execute(delete(self.t).where(self.t.c.id == site_id))

    async def list(self, query: Page) -> list[Site]:
        rows = await _page(self._conn, self.t, self.columns, self.t.c.id, query)
        return [self._from_row(r) for r in rows]


class DeviceRepository:
    t = tables.devices
    columns: Mapping[str, ColumnElement[Any]] = {
        "display_name": t.c.display_name, "serial": t.c.serial, "site": t.c.site_id, "state": t.c.state,
        "template": t.c.template_id, "labels": t.c.labels, "create_time": t.c.create_time,
        "update_time": t.c.update_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> Device:
        return device_from_columns(row._mapping)

    @staticmethod
    def _values(device: Device) -> dict[str, Any]:
        return {"display_name": device.display_name, "site_id": device.site_id, "labels": dict(device.labels),
                "notes": device.notes, "state": int(device.state), "template_id": device.template_id,
                "update_time": device.update_time, "transports": transports_to_json(device.transports),
                "version": device.version, **_location_columns(device.location)}

    async def get(self, device_id: str) -> Device | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.id == device_id))).first()
        return self._from_row(row) if row else None

    async def add(self, device: Device) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    id=device.id, tenant_id=device.tenant_id, serial=device.serial,
                    create_time=device.create_time, **self._values(device)))
        except IntegrityError as exc:
            raise self._integrity_error(exc, device) from exc
        await IccidIndex(self._conn).replace(device.tenant_id, device.id, device.transports, new=True)

    async def save(self, device: Device, expected_version: int) -> None:
        try:
            async with self._conn.begin_nested():
                result = await self._conn.execute(
                    update(self.t).where(self.t.c.id == device.id, self.t.c.version == expected_version)
                    .values(**self._values(device)))
        except IntegrityError as exc:
            raise self._integrity_error(exc, device) from exc
        if result.rowcount != 1:
            raise _stale(device.name, expected_version)
        await IccidIndex(self._conn).replace(device.tenant_id, device.id, device.transports)

    @staticmethod
    def _integrity_error(exc: IntegrityError, device: Device) -> Exception:
        constraint = getattr(exc.orig, "__cause__", None)
        name = getattr(constraint, "constraint_name", "") or str(exc.orig)
        if "serial" in name:
            return AlreadyExists(f"a device with serial {device.serial!r} already exists in this tenant",
                                 reason="SERIAL_EXISTS", metadata={"serial": device.serial})
        if "template" in name:
            return InvalidArgument.field("device.template", f"template {device.template_id!r} does not exist")
        if "site" in name or "fkey" in name:
            return InvalidArgument.field("device.site", f"site {device.site_id!r} does not exist")
        return AlreadyExists(f"device {device.id!r} already exists", reason="DEVICE_EXISTS")

    async def remove(self, device_id: str) -> None:
        await self._conn.execute(delete(self.t).where(self.t.c.id == device_id))

    async def list(self, query: Page) -> list[Device]:
        rows = await _page(self._conn, self.t, self.columns, self.t.c.id, query)
        return [self._from_row(r) for r in rows]

    async def count_at_site(self, site_id: str) -> int:
        stmt = select(func.count()).select_from(self.t).where(self.t.c.site_id == site_id)
        return int((await self._conn.execute(stmt)).scalar_one())

    async def count_with_template(self, template_id: str) -> int:
        stmt = select(func.count()).select_from(self.t).where(self.t.c.template_id == template_id)
        return int((await self._conn.execute(stmt)).scalar_one())
