"""The per-device rules every projection of the registry's devices follows, parameterised by its tables.

A projection applies another context's events out of order (replicas, redelivery), so:
- events of one device are serialised by a transaction-level advisory lock on the device
  (`namespace` + id), so two replicas cannot interleave a deletion with a late upsert;
- a deleted device leaves a tombstone (`tombstones`: device_id primary key, deleted_at) stamped with
  the deletion's event time, and an event from before it is dropped instead of bringing the device back;
- rows only move forward in their `update_time`: a late event changes nothing (`upsert_forward`).
No domain here: which tables a deletion forgets and what a row holds is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Table, Text, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class DeviceTombstones:
    """`tombstones`: the projection's (device_id, deleted_at) table; `namespace`: the advisory lock's
    key prefix, unique per projection (e.g. "ingest.device:")."""

    tombstones: Table
    namespace: str

    def _key(self, device_id: str | ColumnElement[Any]) -> ColumnElement[Any]:
        if isinstance(device_id, str):
            return func.hashtextextended(self.namespace + device_id, 0)
        return func.hashtextextended(func.concat(self.namespace, device_id), 0)

    async def alive(self, conn: AsyncConnection, device_id: str, at: datetime) -> bool:
        """Take the device's lock (until the transaction ends) and say whether an event at `at` is
        newer than the device's deletion, if any: one round trip."""
        t = self.tombstones
        deleted_at = select(t.c.deleted_at).where(t.c.device_id == device_id).scalar_subquery()
        row = (await conn.execute(select(func.pg_advisory_xact_lock(self._key(device_id)), deleted_at))).one()
        return row[1] is None or row[1] < at

    async def lock_shared(self, conn: AsyncConnection, device_id: str) -> None:
        """A reader's lock on the device: it waits for a deletion or state change being applied, and
        holds them off until the transaction ends. Read the projection in a LATER statement (a
        statement's snapshot is taken before it waits)."""
        await conn.execute(select(func.pg_advisory_xact_lock_shared(self._key(device_id))))

    async def lock_many(self, conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, datetime]:
        """`alive` for many devices: their locks (taken in id order, so two batches cannot deadlock) in
        one round trip, then the deletion times of those that have a tombstone."""
        ids = sorted(set(device_ids))
        if not ids:
            return {}
        each = func.unnest(literal(ids, type_=ARRAY(Text))).table_valued("id").render_derived(name="ids")
        await conn.execute(select(func.pg_advisory_xact_lock(self._key(each.c.id))).select_from(each))
        t = self.tombstones
        rows = await conn.execute(select(t.c.device_id, t.c.deleted_at).where(t.c.device_id.in_(ids)))
        return {row.device_id: row.deleted_at for row in rows}

    async def bury(self, conn: AsyncConnection, device_id: str, at: datetime, *, forget: Iterable[Table]) -> None:
        """Delete the device's rows from each of `forget` (in that order; each has a `device_id`
        column) and keep the newest deletion time as its tombstone."""
        await self.alive(conn, device_id, at)  # for the lock
        for table in forget:
            await conn.execute(delete(table).where(table.c.device_id == device_id))
        t = self.tombstones
        statement = pg_insert(t).values(device_id=device_id, deleted_at=at)
        await conn.execute(statement.on_conflict_do_update(
            index_elements=["device_id"], set_={"deleted_at": func.greatest(t.c.deleted_at,
                                                                            statement.excluded.deleted_at)}))


async def upsert_forward(conn: AsyncConnection, table: Table, keys: Sequence[str], values: dict[str, Any], *,
                         time_column: str = "update_time") -> bool:
    """Insert, or overwrite only with a newer-or-equal `time_column` (a late event changes nothing).
    Returns whether the row was written."""
    statement = pg_insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={k: statement.excluded[k] for k in values if k not in keys},
        where=table.c[time_column] <= statement.excluded[time_column])
    return (await conn.execute(statement.returning(literal(True)))).first() is not None


def forward_conflict_clause(table: Table, keys: Sequence[str], columns: Sequence[str], *,
                            time_column: str = "update_time") -> str:
    """The `upsert_forward` rule as a constant `ON CONFLICT` clause, for `muster.runtime.bulk_insert`
    (one statement for many rows)."""
    for name in (table.name, time_column, *keys, *columns):
        if not (name.isidentifier() and name == name.lower()):  # it goes into SQL text unquoted
            raise ValueError(f"{name!r}: only plain lower-case identifiers")
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)
    return (f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates} "
            f"WHERE {table.name}.{time_column} <= EXCLUDED.{time_column}")


def newest_alive(candidates: Iterable[tuple[datetime, dict[str, Any]]], deleted: Mapping[str, datetime], *,
                 time_column: str = "update_time") -> list[dict[str, Any]]:
    """A batch of device rows (each with the time of the event that carried it) reduced to what
    applying them one by one would leave: rows from before their device's deletion dropped, and of
    several rows of one device the newest by `time_column` (as the forward-only upsert decides)."""
    newest: dict[str, dict[str, Any]] = {}
    for at, row in candidates:
        device_id = row["device_id"]
        gone = deleted.get(device_id)
        if gone is not None and gone >= at:
            continue
        kept = newest.get(device_id)
        if kept is None or kept[time_column] <= row[time_column]:
            newest[device_id] = row
    return list(newest.values())
