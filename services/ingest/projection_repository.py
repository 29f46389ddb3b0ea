"""SQL of ingest's registry projection (see `projection` for the rules it serves): forward-only
upserts, per-device serialisation and tombstones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.tables import registry_devices, registry_modules, registry_templates, registry_tombstones


class ProjectionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def alive(self, device_id: str, at: datetime) -> bool:
        """Take the device's lock (serialising this transaction with every other one applying an event
        of the same device), and say whether an event at `at` is newer than the device's deletion, if
        any: one round trip."""
        lock = func.pg_advisory_xact_lock(func.hashtextextended("ingest.device:" + device_id, 0))
        deleted_at = select(registry_tombstones.c.deleted_at).where(
            registry_tombstones.c.device_id == device_id).scalar_subquery()
        row = (await self._conn.execute(select(lock, deleted_at))).one()
        return row[1] is None or row[1] < at

    async def bury(self, device_id: str, at: datetime) -> None:
        """Forget the device and its modules; keep the newest deletion time as its tombstone."""
        await self.alive(device_id, at)  # for the lock
        await self._conn.execute(delete(registry_modules).where(registry_modules.c.device_id == device_id))
        await self._conn.execute(delete(registry_devices).where(registry_devices.c.device_id == device_id))
        statement = pg_insert(registry_tombstones).values(device_id=device_id, deleted_at=at)
        await self._conn.execute(statement.on_conflict_do_update(
            index_elements=["device_id"], set_={"deleted_at": func.greatest(
                registry_tombstones.c.deleted_at, statement.excluded.deleted_at)}))

    async def upsert_device(self, values: dict[str, Any]) -> None:
        await self._upsert(registry_devices, ["device_id"], values)

    async def upsert_template(self, values: dict[str, Any]) -> None:
        await self._upsert(registry_templates, ["template_id"], values)

    async def upsert_module(self, values: dict[str, Any]) -> None:
        await self._upsert(registry_modules, ["device_id", "module_id"], values)

    async def delete_template(self, template_id: str) -> None:
        await self._conn.execute(delete(registry_templates).where(registry_templates.c.template_id == template_id))

    async def delete_module(self, device_id: str, module_id: str) -> None:
        await self._conn.execute(delete(registry_modules).where(
            registry_modules.c.device_id == device_id, registry_modules.c.module_id == module_id))

    async def _upsert(self, table: Table, keys: list[str], values: dict[str, Any]) -> None:
        """Insert, or overwrite only with a newer-or-equal `update_time` (late events change nothing)."""
        statement = pg_insert(table).values(**values)
        await self._conn.execute(statement.on_conflict_do_update(
            index_elements=keys, set_={k: statement.excluded[k] for k in values if k not in keys},
            where=table.c.update_time <= statement.excluded.update_time))
