"""SQL of the commands context's projection of the registry (see `projection` for the rules):
forward-only upserts, per-device serialisation, tombstones, and the lookup CreateCommand makes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.bulk_insert import insert_rows
from muster.runtime.device_projection import DeviceTombstones, forward_conflict_clause, upsert_forward
from services.commands.creation import CommandDefinition
from services.commands.tables import registry_devices, registry_templates, registry_tombstones

DEVICE_RULES = DeviceTombstones(registry_tombstones, "commands.device:")
_DEVICE_COLUMNS = ("device_id", "tenant_id", "template_id", "state", "update_time")
_UPSERT_DEVICES = forward_conflict_clause(registry_devices, ["device_id"], _DEVICE_COLUMNS)


@dataclass(frozen=True)
class DeviceCommands:
    """What CreateCommand needs to know about a device: its lifecycle state and its template's commands."""

    device_id: str
    state: int  # muster.registry.v1.DeviceState
    template_id: str | None
    definitions: dict[str, CommandDefinition]


def definitions_from_json(value: dict[str, Any]) -> dict[str, CommandDefinition]:
    found = {}
    for name, spec in value.items():
        timeout = spec.get("default_timeout_seconds")
        found[name] = CommandDefinition(name=name, parameters=spec.get("parameters") or {},
                                        default_timeout=timedelta(seconds=timeout) if timeout else None)
    return found


class ProjectionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def device_commands(self, device_id: str) -> DeviceCommands | None:
        """The device (if the caller's scope sees it) and its template's command definitions, in one query."""
        d, t = registry_devices, registry_templates
        row = (await self._conn.execute(
            select(d.c.device_id, d.c.state, d.c.template_id, t.c.commands)
            .select_from(d.outerjoin(t, t.c.template_id == d.c.template_id))
            .where(d.c.device_id == device_id))).first()
        if row is None:
            return None
        return DeviceCommands(row.device_id, row.state, row.template_id, definitions_from_json(row.commands or {}))

    async def alive(self, device_id: str, at: datetime) -> bool:
        """Take the device's lock and say whether an event at `at` is newer than its deletion, if any."""
        return await DEVICE_RULES.alive(self._conn, device_id, at)

    async def lock_many(self, device_ids: Sequence[str]) -> dict[str, datetime]:
        """`alive` for many devices in one round trip: their locks, and their deletion times."""
        return await DEVICE_RULES.lock_many(self._conn, device_ids)

    async def upsert_devices(self, rows: Sequence[dict[str, Any]]) -> None:
        """Many forward-only `upsert_device`s in one statement (at most one row per device)."""
        await insert_rows(self._conn, registry_devices, rows, on_conflict=_UPSERT_DEVICES)

    async def lock_device(self, device_id: str) -> None:
        """CreateCommand's shared lock on the device (read the device after it): a deletion or state
        change being applied either commits first (the create then finds the device gone or not
        sendable) or waits for the create's commit (and then cancels the new command too)."""
        await DEVICE_RULES.lock_shared(self._conn, device_id)

    async def bury(self, device_id: str, at: datetime) -> None:
        await DEVICE_RULES.bury(self._conn, device_id, at, forget=[registry_devices])

    async def upsert_device(self, values: dict[str, Any]) -> bool:
        """Forward-only; returns whether it was written (False: a newer state is already there)."""
        return await upsert_forward(self._conn, registry_devices, ["device_id"], values)

    async def upsert_template(self, values: dict[str, Any]) -> None:
        await upsert_forward(self._conn, registry_templates, ["template_id"], values)

    async def delete_template(self, template_id: str) -> None:
        await self._conn.execute(delete(registry_templates).where(registry_templates.c.template_id == template_id))
