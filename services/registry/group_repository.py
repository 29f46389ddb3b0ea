"""Persistence of device groups and their static memberships (row-level security scopes every
statement to the unit of work's tenant; the composite foreign keys keep memberships within one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.errors import AlreadyExists
from muster.runtime.listing import Page
from services.registry import tables
from services.registry.domain import Device
from services.registry.groups import Group, GroupType
from services.registry.repository import DeviceRepository, _page, _stale


class GroupRepository:
    t = tables.groups
    members = tables.group_members
    columns: Mapping[str, ColumnElement[Any]] = {
        "display_name": t.c.display_name, "type": t.c.type, "labels": t.c.labels,
        "create_time": t.c.create_time, "update_time": t.c.update_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _from_row(row: Row[Any]) -> Group:
        return Group(tenant_id=row.tenant_id, id=row.id, display_name=row.display_name, description=row.description,
                     labels=row.labels, type=GroupType(row.type), filter=row.filter, create_time=row.create_time,
                     update_time=row.update_time, version=row.version)

    @staticmethod
    def _values(group: Group) -> dict[str, Any]:
        return {"display_name": group.display_name, "description": group.description, "labels": dict(group.labels),
                "filter": group.filter, "update_time": group.update_time, "version": group.version}

    async def get(self, group_id: str) -> Group | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.id == group_id))).first()
        return self._from_row(row) if row else None

    async def add(self, group: Group) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(
                    tenant_id=group.tenant_id, id=group.id, type=int(group.type), create_time=group.create_time,
                    **self._values(group)))
        except IntegrityError as exc:
            raise AlreadyExists(f"group {group.id!r} already exists", reason="GROUP_EXISTS") from exc

    async def save(self, group: Group, expected_version: int) -> None:
        result = await self._conn.execute(
            update(self.t).where(self.t.c.id == group.id, self.t.c.version == expected_version)
            .values(**self._values(group)))
        if result.rowcount != 1:
            raise _stale(group.name, expected_version)

    async def remove(self, group_id: str) -> None:
        await self._conn.execute(delete(self.t).where(self.t.c.id == group_id))

    async def existing_devices(self, device_ids: Sequence[str]) -> set[str]:
        """Which of `device_ids` are devices the scope can see."""
        d = tables.devices
        rows = await self._conn.execute(select(d.c.id).where(d.c.id.in_(list(device_ids))))
        return {r.id for r in rows}

    async def add_members(self, tenant_id: str, group_id: str, device_ids: Sequence[str],
                          now: datetime) -> list[str]:
        """Insert the memberships that do not exist yet; the ids that were new, in the given order."""
        stmt = pg_insert(self.members).values(
            [{"tenant_id": tenant_id, "group_id": group_id, "device_id": d, "create_time": now} for d in device_ids])
        added = {r.device_id for r in await self._conn.execute(
            stmt.on_conflict_do_nothing().returning(self.members.c.device_id))}
        return [d for d in device_ids if d in added]

    async def remove_members(self, group_id: str, device_ids: Sequence[str]) -> list[str]:
        """Delete the memberships that exist; the ids that were members, in the given order."""
        m = self.members
        removed = {r.device_id for r in await self._conn.execute(
            delete(m).where(m.c.group_id == group_id, m.c.device_id.in_(list(device_ids))).returning(m.c.device_id))}
        return [d for d in device_ids if d in removed]

    async def list_members(self, group_id: str, query: Page) -> list[Device]:
        """A page of a STATIC group's devices, filtered and ordered like ListDevices."""
        d, m = tables.devices, self.members
        rows = await _page(self._conn, d, DeviceRepository.columns, d.c.id, query,
                           d.c.id.in_(select(m.c.device_id).where(m.c.group_id == group_id)))
        return [DeviceRepository._from_row(r) for r in rows]

    async def list(self, query: Page, *, group_type: GroupType | None = None,
                   member: str | None = None) -> list[Group]:
        """A page of groups; only those of `group_type`, and only STATIC groups listing device `member`."""
        where: list[ColumnElement[bool]] = []
        if group_type is not None:
            where.append(self.t.c.type == int(group_type))
        if member is not None:
            m = self.members
            where.append(self.t.c.id.in_(select(m.c.group_id).where(m.c.device_id == member)))
        rows = await _page(self._conn, self.t, self.columns, self.t.c.id, query, *where)
        return [self._from_row(r) for r in rows]
