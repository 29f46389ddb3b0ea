"""Writing telemetry and device-log batches: exactly once per (device, ts, stream sequence, index), one transaction
with the latest values, acked by the caller only after it commits.

Fast path: COPY each day's rows straight into that day's partition (COPY refuses the parent, which has
row-level security; the service role may INSERT into partitions but reads only through the parent).
A redelivered message makes that COPY hit the primary key; then (and only then) the batch takes the
dedup path: COPY into a per-connection staging table and INSERT ... ON CONFLICT DO NOTHING through
the parent. Latest values: the newest row per device metric, picked in Python, staged by COPY and
upserted only where newer (the table's fillfactor leaves room for HOT updates) and marked not yet
notified (services/ingest/latest_notifier.py turns the marks into coalesced events: no per-message cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from services.ingest.logs import LOG_COLUMNS, LogRow
from services.ingest.processing import ROW_COLUMNS, TelemetryRow


@dataclass(frozen=True)
class PartitionedTable:
    """A daily-partitioned table of ingest, and the per-connection staging table of its dedup path."""

    name: str
    columns: tuple[str, ...]
    column_types: str  # the staging table's column definitions
    ts_position: int

    @property
    def staging(self) -> str:
        return f"{self.name}_staging"

    def create_staging(self) -> str:
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.staging} ({self.column_types}) ON COMMIT DELETE ROWS"

    def move(self) -> str:
        columns = ", ".join(self.columns)
        return (f"INSERT INTO ingest.{self.name} ({columns}) SELECT {columns} FROM {self.staging} "  # noqa: S608
                "ON CONFLICT DO NOTHING")


TELEMETRY = PartitionedTable(
    "telemetry", ROW_COLUMNS, "tenant_id text, device_id text, metric text, ts timestamptz, value_num double "
    "precision, value_bool boolean, value_str text, stream_seq bigint, idx integer", ts_position=3)
DEVICE_LOGS = PartitionedTable(
    "device_logs", LOG_COLUMNS, "tenant_id text, device_id text, ts timestamptz, level smallint, message text, "
    "fields jsonb, stream_seq bigint, idx integer", ts_position=2)

LATEST_STAGING = "latest_staging"
LATEST_COLUMNS = ("tenant_id", "device_id", "metric", "ts", "value_num", "value_bool", "value_str")

_CREATE_STAGING = (
    TELEMETRY.create_staging(),
    DEVICE_LOGS.create_staging(),
    f"CREATE TEMP TABLE IF NOT EXISTS {LATEST_STAGING} (tenant_id text, device_id text, metric text, "
    "ts timestamptz, value_num double precision, value_bool boolean, value_str text) ON COMMIT DELETE ROWS",
)

_LATEST = """
INSERT INTO ingest.latest_telemetry (tenant_id, device_id, metric, ts, value_num, value_bool, value_str)
SELECT tenant_id, device_id, metric, ts, value_num, value_bool, value_str FROM latest_staging
ORDER BY device_id, metric
ON CONFLICT (device_id, metric) DO UPDATE
SET ts = excluded.ts, value_num = excluded.value_num, value_bool = excluded.value_bool,
    value_str = excluded.value_str, tenant_id = excluded.tenant_id, notified = false
WHERE latest_telemetry.ts <= excluded.ts
"""

_PLATFORM_SCOPE = "SELECT set_config('muster.tenant_id', '', true), set_config('muster.platform', 'on', true)"


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """`postgresql+asyncpg://...` (the services' URL form) -> the plain libpq form asyncpg takes."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _prepare(conn: Any) -> None:
    for statement in _CREATE_STAGING:
        await conn.execute(statement)


async def create_pool(sqlalchemy_url: str, *, size: int = 4) -> Any:
    """A small asyncpg pool for the write path; each connection gets its staging tables once."""
    return await asyncpg.create_pool(asyncpg_dsn(sqlalchemy_url), min_size=1, max_size=size, init=_prepare,
                                     command_timeout=60)


def by_partition(table: PartitionedTable, rows: Sequence[Sequence[Any]]) -> dict[str, list[Sequence[Any]]]:
    """Rows grouped by the daily partition (UTC day of their ts) they belong to (named once per day:
    formatting a name per row was a tenth of the hot path)."""
    days: dict[date, list[Sequence[Any]]] = {}
    position = table.ts_position
    for row in rows:
        day = row[position].date()
        group = days.get(day)
        if group is None:
            group = days[day] = []
        group.append(row)
    return {f"{table.name}_{day:%Y%m%d}": group for day, group in days.items()}


async def write_once(conn: Any, table: PartitionedTable, rows: Sequence[Sequence[Any]]) -> int:
    """Inside the caller's transaction: store rows not stored yet; returns how many were new."""
    try:
        async with conn.transaction():  # a savepoint: a duplicate undoes only the fast path
            for partition, group in by_partition(table, rows).items():
                await conn.copy_records_to_table(partition, schema_name="ingest", records=group,
                                                 columns=table.columns)
        return len(rows)
    except asyncpg.UniqueViolationError:
        await conn.copy_records_to_table(table.staging, records=rows, columns=table.columns)
        status = await conn.execute(table.move())
        return int(status.rsplit(" ", 1)[-1])


def newest(rows: Sequence[TelemetryRow]) -> list[tuple[Any, ...]]:
    """The newest row per (device, metric) of a batch, as latest_telemetry rows."""
    best: dict[tuple[str, str], TelemetryRow] = {}
    for row in rows:
        key = (row[1], row[2])
        current = best.get(key)
        if current is None or (row[3], row[7], row[8]) > (current[3], current[7], current[8]):
            best[key] = row
    return [best[key][:7] for key in sorted(best)]  # one lock order for every writer: no deadlocks


class TelemetryStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def write(self, rows: Sequence[TelemetryRow]) -> int:
        """Store `rows` and fold them into the latest values, in one transaction; returns new rows."""
        if not rows:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_PLATFORM_SCOPE)
            new = await write_once(conn, TELEMETRY, rows)
            await conn.copy_records_to_table(LATEST_STAGING, records=newest(rows), columns=LATEST_COLUMNS)
            await conn.execute(_LATEST)
        return new


class LogStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def write(self, rows: Sequence[LogRow]) -> int:
        if not rows:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_PLATFORM_SCOPE)
            return await write_once(conn, DEVICE_LOGS, rows)
