"""Reading telemetry (SQLAlchemy Core on a tenant-scoped transaction: RLS limits every row), and claiming
changed latest values for the registry's notification (platform scope)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, literal, select, text, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.log_queries import LogQuery, StoredLog, like_pattern
from services.ingest.logs import LogLevel
from services.ingest.queries import Bucket, PointValue, TelemetryQuery, value_of
from services.ingest.tables import device_logs, edge_devices, latest_telemetry, registry_devices, telemetry

_EPOCH = text("TIMESTAMPTZ '1970-01-01 00:00:00+00'")
RawRow = tuple[PointValue, int, int]  # the point, its stream_seq and idx (the keyset tiebreak)


class TelemetryRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def device_known(self, device_id: str) -> bool:
        """In the caller's tenant (RLS): known to the registry projection, or, while that lags, to the
        edge's (a device that authenticated may already have data stored; see `profiles`)."""
        registry = select(registry_devices.c.device_id).where(registry_devices.c.device_id == device_id)
        edge = select(edge_devices.c.device_id).where(edge_devices.c.device_id == device_id, ~edge_devices.c.deleted)
        row = await self._conn.execute(registry.union_all(edge).limit(1))
        return row.first() is not None

    async def raw(self, query: TelemetryQuery, after: Sequence[Any] | None, limit: int) -> list[RawRow]:
        t = telemetry.c
        conditions = [t.device_id == query.device_id, t.ts >= query.start, t.ts < query.end]
        if query.metrics:
            conditions.append(t.metric.in_(query.metrics))
        if after is not None:
            conditions.append(tuple_(t.ts, t.stream_seq, t.idx) > tuple_(*(literal(v) for v in after)))
        rows = await self._conn.execute(
            select(t.metric, t.ts, t.value_num, t.value_bool, t.value_str, t.stream_seq, t.idx)
            .where(and_(*conditions)).order_by(t.ts, t.stream_seq, t.idx).limit(limit))
        return [(PointValue(r.metric, r.ts, value_of(r.value_num, r.value_bool, r.value_str)), r.stream_seq, r.idx)
                for r in rows]

    async def buckets(self, query: TelemetryQuery) -> list[Bucket]:
        assert query.bucket is not None
        t = telemetry.c
        start = func.date_bin(query.bucket, t.ts, _EPOCH).label("bucket_start")
        order = (t.ts, t.stream_seq, t.idx)

        def first(column: Any, descending: bool = False) -> Any:
            """The bucket's first (or last) value of `column`, by time then capture order."""
            ordering = [c.desc() for c in order] if descending else list(order)
            return func.array_agg(aggregate_order_by(column, *ordering))[1]

        conditions = [t.device_id == query.device_id, t.ts >= query.start, t.ts < query.end]
        if query.metrics:
            conditions.append(t.metric.in_(query.metrics))
        statement = (
            select(t.metric, start, func.count().label("n"), func.avg(t.value_num), func.min(t.value_num),
                   func.max(t.value_num), func.sum(t.value_num),
                   first(t.value_num), first(t.value_bool), first(t.value_str),
                   first(t.value_num, True), first(t.value_bool, True), first(t.value_str, True))
            .where(and_(*conditions)).group_by(t.metric, start).order_by(t.metric, start))
        rows = await self._conn.execute(statement)
        return [Bucket(metric=r[0], start=r[1], count=int(r[2]), avg=_float(r[3]), min=_float(r[4]),
                       max=_float(r[5]), sum=_float(r[6]), first=value_of(r[7], r[8], r[9]),
                       last=value_of(r[10], r[11], r[12])) for r in rows]

    async def latest(self, device_id: str, after: str | None, limit: int) -> list[PointValue]:
        lt = latest_telemetry.c
        conditions = [lt.device_id == device_id]
        if after is not None:
            conditions.append(lt.metric > after)
        rows = await self._conn.execute(
            select(lt.metric, lt.ts, lt.value_num, lt.value_bool, lt.value_str)
            .where(and_(*conditions)).order_by(lt.metric).limit(limit))
        return [PointValue(r.metric, r.ts, value_of(r.value_num, r.value_bool, r.value_str)) for r in rows]


    async def logs(self, query: LogQuery, after: Sequence[Any] | None, limit: int) -> list[tuple[StoredLog, int, int]]:
        """Newest first; each with its stream_seq and idx (the keyset tiebreak)."""
        lg = device_logs.c
        conditions = [lg.device_id == query.device_id, lg.ts >= query.start, lg.ts < query.end]
        if query.min_level is not None:
            conditions.append(lg.level >= int(query.min_level))
        if query.text:
            conditions.append(lg.message.ilike(like_pattern(query.text), escape="\\"))
        if after is not None:
            conditions.append(tuple_(lg.ts, lg.stream_seq, lg.idx) < tuple_(*(literal(v) for v in after)))
        rows = await self._conn.execute(
            select(lg.ts, lg.level, lg.message, lg.fields, lg.stream_seq, lg.idx).where(and_(*conditions))
            .order_by(lg.ts.desc(), lg.stream_seq.desc(), lg.idx.desc()).limit(limit))
        return [(StoredLog(r.ts, LogLevel(r.level), r.message, r.fields), r.stream_seq, r.idx) for r in rows]

def _float(value: Any) -> float | None:
    return None if value is None else float(value)


_CLAIM_CHANGED_LATEST = text("""
UPDATE ingest.latest_telemetry l SET notified = true
FROM (SELECT device_id, metric FROM ingest.latest_telemetry WHERE NOT notified
      ORDER BY device_id, metric LIMIT :limit FOR UPDATE SKIP LOCKED) c
WHERE l.device_id = c.device_id AND l.metric = c.metric
RETURNING l.tenant_id, l.device_id, l.metric, l.ts, l.value_num, l.value_bool, l.value_str
""")


async def claim_changed_latest(conn: AsyncConnection, limit: int) -> list[tuple[Any, ...]]:
    """Mark up to `limit` changed latest values as notified and return them (tenant, device, metric, ts,
    num, bool, str). Rows locked by a writer or another replica are skipped, never waited on."""
    rows = await conn.execute(_CLAIM_CHANGED_LATEST, {"limit": limit})
    return [tuple(row) for row in rows]
