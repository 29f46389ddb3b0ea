"""Set-at-a-time persistence for bulk import: one statement per batch instead of one per device.

Lookups do not lock (most rows of a re-import are unchanged); the rows a batch will update are locked
(FOR UPDATE) and their versions compared before writing, so a concurrent UpdateDevice is never
overwritten; inserts are single statements over column arrays (`insert_rows`), updates one
executemany. Row-level security limits
everything to the unit of work's tenant, as in repository.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ARRAY, Text, any_, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.bulk_insert import insert_rows
from muster.runtime.db import TENANT_SETTING
from muster.runtime.errors import AlreadyExists
from services.registry import tables
from services.registry.domain import Device
from services.registry.repository import DeviceRepository
from services.registry.templates import Sensor


class BatchConflict(AlreadyExists):
    """A concurrent writer took a serial this batch was about to create, or changed a device it was about
    to update; the batch is worth a retry."""

    reason = "SERIAL_EXISTS"


# Literal SQL on purpose: as bind parameters, the generic plan could not prove `serial <> ''` (the
# partial index's predicate) and would scan.
_OWN_TENANT_SERIAL = text(f"{tables.devices.fullname}.tenant_id = current_setting('{TENANT_SETTING}', true) "
                          f"AND {tables.devices.fullname}.serial <> ''")


class BulkDeviceRepository:
    t = tables.devices

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _select(self, column: Any, values: Collection[str], *also: Any) -> list[Device]:
        if not values:
            return []
        stmt = select(self.t).where(column == any_(bindparam("values", list(values), type_=ARRAY(Text))), *also)
        return [DeviceRepository._from_row(row) for row in await self._conn.execute(stmt)]

    async def by_serials(self, serials: Collection[str]) -> dict[str, Device]:
        """One round trip per batch. Row-level security alone would limit it to the tenant, but only
        as a filter over a scan of every tenant's devices; naming the tenant setting (a stable
        function, so the generic plan keeps it) and `serial <> ''` lets PostgreSQL use the partial
        (tenant_id, serial) index. Measured: 500 serials among 30k devices, seq scan 16-25 ms,
        index 6-13 ms, and the scan grows with the whole table. (A bind parameter for the tenant
        instead of the setting gave a ~20x slower generic plan.)"""
        return {d.serial: d for d in await self._select(self.t.c.serial, serials, _OWN_TENANT_SERIAL)}

    async def by_ids(self, ids: Collection[str]) -> dict[str, Device]:
        return {d.id: d for d in await self._select(self.t.c.id, ids)}

    async def sensor_keys(self, device_ids: Collection[str]) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {device_id: set() for device_id in device_ids}
        if device_ids:
            s = tables.sensors
            rows = await self._conn.execute(select(s.c.device_id, s.c.key).where(s.c.device_id.in_(list(device_ids))))
            for row in rows:
                keys[row.device_id].add(row.key)
        return keys

    async def insert_devices(self, devices: Sequence[Device]) -> None:
        if not devices:
            return
        rows = [{"id": d.id, "tenant_id": d.tenant_id, "serial": d.serial, "create_time": d.create_time,
                 **DeviceRepository._values(d)} for d in devices]
        try:
            async with self._conn.begin_nested():
                await insert_rows(self._conn, self.t, rows)
        except IntegrityError as exc:
            raise BatchConflict("a device with one of this batch's serials was created concurrently") from exc

    async def lock_versions(self, ids: Collection[str]) -> dict[str, int]:
        """Lock the rows about to be updated (FOR UPDATE) and say which version each has now."""
        if not ids:
            return {}
        stmt = (select(self.t.c.id, self.t.c.version)
                .where(self.t.c.id == any_(bindparam("ids", list(ids), type_=ARRAY(Text)))).with_for_update())
        return {row.id: row.version for row in await self._conn.execute(stmt)}

    async def update_devices(self, devices: Sequence[Device]) -> None:
        """For rows locked by `lock_versions` at the versions these were computed from."""
        if not devices:
            return
        stmt = update(self.t).where(self.t.c.id == bindparam("b_id"))
        rows = [{"b_id": d.id, **DeviceRepository._values(d)} for d in devices]
        await self._conn.execute(stmt, rows)

    async def insert_sensors(self, sensors: Sequence[Sensor]) -> None:
        if not sensors:
            return
        await insert_rows(self._conn, tables.sensors, [
            {"tenant_id": s.tenant_id, "device_id": s.device_id, "key": s.key, "type": int(s.type or 0),
             "unit": s.unit, "label": s.label, "enabled": s.enabled, "create_time": s.create_time,
             "update_time": s.update_time, "version": s.version} for s in sensors])
