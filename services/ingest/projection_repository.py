"""SQL of ingest's registry projection (see `projection` for the rules it serves): forward-only
upserts, per-device serialisation and tombstones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.bulk_insert import insert_rows
from muster.runtime.device_projection import DeviceTombstones, forward_conflict_clause, upsert_forward
from services.ingest.tables import registry_devices, registry_modules, registry_templates, registry_tombstones

_DEVICES = DeviceTombstones(registry_tombstones, "ingest.device:")
_DEVICE_COLUMNS = ("device_id", "tenant_id", "template_id", "state", "update_time")
_UPSERT_DEVICES = forward_conflict_clause(registry_devices, ["device_id"], _DEVICE_COLUMNS)


class ProjectionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def alive(self, device_id: str, at: datetime) -> bool:
        """Take the device's lock (serialising this transaction with every other one applying an event
        of the same device), and say whether an event at `at` is newer than the device's deletion, if
        any: one round trip."""
        return await _DEVICES.alive(self._conn, device_id, at)

    async def lock_many(self, device_ids: Sequence[str]) -> dict[str, datetime]:
        """`alive` for many devices: their locks (taken in id order) in one round trip, then the
        deletion times of those that have a tombstone."""
        return await _DEVICES.lock_many(self._conn, device_ids)

    async def upsert_devices(self, rows: Sequence[dict[str, Any]]) -> None:
        """Many `upsert_device`s in one statement (at most one row per device)."""
        await insert_rows(self._conn, registry_devices, rows, on_conflict=_UPSERT_DEVICES)

    async def bury(self, device_id: str, at: datetime) -> None:
        """Forget the device and its modules; keep the newest deletion time as its tombstone."""
        await _DEVICES.bury(self._conn, device_id, at, forget=[registry_modules, registry_devices])

    async def upsert_device(self, values: dict[str, Any]) -> None:
        await upsert_forward(self._conn, registry_devices, ["device_id"], values)

    async def upsert_template(self, values: dict[str, Any]) -> None:
        await upsert_forward(self._conn, registry_templates, ["template_id"], values)

    async def upsert_module(self, values: dict[str, Any]) -> None:
        await upsert_forward(self._conn, registry_modules, ["device_id", "module_id"], values)

    async def delete_template(self, template_id: str) -> None:
        await self._conn.execute(delete(registry_templates).where(registry_templates.c.template_id == template_id))

    async def delete_module(self, device_id: str, module_id: str) -> None:
        await self._conn.execute(delete(registry_modules).where(
            registry_modules.c.device_id == device_id, registry_modules.c.module_id == module_id))
