"""SQL of the connectivity and health slice (SQLAlchemy Core): presence rows, the connection log, the
latest health. Device -> tenant comes from the twin's registry projection (`twins`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Row, Text, and_, any_, bindparam, case, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.twin.connectivity import ABNORMAL, DisconnectReason, Kind, Session
from services.twin.connectivity_tables import WILL_KIND, connection_log, connectivity, device_health
from services.twin.presence import WILL_WINDOW, Connectivity, Presence
from services.twin.tables import twins

_IDS = ARRAY(Text)


def _session(row: Row[Any]) -> Session | None:
    if row.session_id is None or row.connected_at is None:
        return None
    return Session(row.session_id, row.client_id or "", row.remote_address or "", row.protocol or "",
                   row.connected_at, row.disconnected_at, DisconnectReason(row.disconnect_reason), row.detail)


def state_of(row: Row[Any]) -> Connectivity:
    return Connectivity(
        device_id=row.device_id, presence=Presence(row.presence), reason=row.reason, since=row.since,
        session=_session(row), last_seen=row.last_seen, will_at=row.will_at,
        stale_after=timedelta(seconds=row.stale_after_seconds) if row.stale_after_seconds else None)


def _values(tenant_id: str, state: Connectivity) -> dict[str, Any]:
    session = state.session
    return {
        "device_id": state.device_id, "tenant_id": tenant_id, "presence": int(state.presence),
        "reason": state.reason, "since": state.since, "last_seen": state.last_seen, "will_at": state.will_at,
        "stale_after_seconds": state.stale_after.total_seconds() if state.stale_after else None,
        "session_id": session.session_id if session else None, "client_id": session.client_id if session else None,
        "remote_address": session.remote_address if session else None,
        "protocol": session.protocol if session else None, "connected_at": session.connected_at if session else None,
        "disconnected_at": session.disconnected_at if session else None,
        "disconnect_reason": int(session.reason) if session else 0, "detail": session.detail if session else ""}


def log_row(tenant_id: str, device_id: str, kind: Kind, time: datetime, session: Session) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "device_id": device_id, "session_id": session.session_id, "kind": int(kind),
            "time": time, "client_id": session.client_id, "remote_address": session.remote_address,
            "protocol": session.protocol,
            "reason": int(session.reason) if kind is Kind.DISCONNECTED else 0,
            "detail": session.detail if kind is Kind.DISCONNECTED else ""}


def _will_near(log: Any) -> Any:
    """EXISTS a will of the same device within the will window of this log row's time."""
    will = connection_log.alias("will")
    return select(literal(1)).where(
        will.c.device_id == log.c.device_id, will.c.kind == WILL_KIND,
        will.c.time.between(log.c.time - WILL_WINDOW, log.c.time + WILL_WINDOW)).exists()


def effective_reason(log: Any = connection_log) -> Any:
    """A clean-looking close with a will next to it was a lost connection."""
    return case((and_(log.c.reason == int(DisconnectReason.CLIENT_DISCONNECT), _will_near(log)),
                 int(DisconnectReason.CONNECTION_LOST)), else_=log.c.reason)


class ConnectivityRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def tenants_of(self, device_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(device_ids))
        if not ids:
            return {}
        rows = await self._conn.execute(select(twins.c.device_id, twins.c.tenant_id).where(
            twins.c.device_id == any_(bindparam("ids", ids, type_=_IDS))))
        return {row.device_id: row.tenant_id for row in rows}

    async def lock(self, device_ids: Iterable[str]) -> dict[str, Connectivity]:
        """The devices' rows, locked (in device order: no deadlock between replicas)."""
        ids = sorted(set(device_ids))
        if not ids:
            return {}
        rows = await self._conn.execute(
            select(connectivity).where(connectivity.c.device_id == any_(bindparam("ids", ids, type_=_IDS)))
            .order_by(connectivity.c.device_id).with_for_update())
        return {row.device_id: state_of(row) for row in rows}

    async def save(self, states: Sequence[tuple[str, Connectivity]]) -> None:
        if not states:
            return
        rows = [_values(tenant, state) for tenant, state in states]
        statement = pg_insert(connectivity).values(rows)
        await self._conn.execute(statement.on_conflict_do_update(
            index_elements=["device_id"],
            set_={key: statement.excluded[key] for key in rows[0] if key != "device_id"}))

    async def append_log(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            await self._conn.execute(pg_insert(connection_log).values(list(rows)).on_conflict_do_nothing())

    async def touch(self, seen: Mapping[str, datetime]) -> list[str]:
        """last_seen moves forward for every device with a row; returns the STALE ones among them (their
        presence changes: the caller locks and applies them)."""
        if not seen:
            return []
        ids = sorted(seen)
        incoming = select(func.unnest(bindparam("ids", ids, type_=_IDS)).label("device_id"),
                          func.unnest(bindparam("times", [seen[i] for i in ids],
                                                type_=ARRAY(connectivity.c.last_seen.type))).label("at")
                          ).subquery()
        rows = await self._conn.execute(
            connectivity.update().where(connectivity.c.device_id == incoming.c.device_id)
            .values(last_seen=func.greatest(connectivity.c.last_seen, incoming.c.at))
            .returning(connectivity.c.device_id, connectivity.c.presence))
        return [row.device_id for row in rows if row.presence == Presence.STALE]

    async def silent(self, now: datetime, default_stale_after: timedelta,
                     limit: int) -> dict[str, tuple[str, Connectivity]]:
        """ONLINE devices silent past their interval, locked (skipping rows another replica holds)."""
        heard = func.greatest(connectivity.c.last_seen, connectivity.c.since, connectivity.c.connected_at)
        interval = func.coalesce(connectivity.c.stale_after_seconds, default_stale_after.total_seconds())
        rows = await self._conn.execute(
            select(connectivity).where(
                connectivity.c.presence == int(Presence.ONLINE),
                heard < bindparam("now", now) - func.make_interval(0, 0, 0, 0, 0, 0, interval))
            .order_by(connectivity.c.device_id).limit(limit).with_for_update(skip_locked=True))
        return {row.device_id: (row.tenant_id, state_of(row)) for row in rows}

    async def open_sessions(self, started_before: datetime) -> list[tuple[str, Connectivity]]:
        rows = await self._conn.execute(select(connectivity).where(
            connectivity.c.disconnected_at.is_(None), connectivity.c.session_id.is_not(None),
            connectivity.c.connected_at < started_before))
        return [(row.tenant_id, state_of(row)) for row in rows]

    async def get(self, device_id: str) -> Connectivity | None:
        row = (await self._conn.execute(select(connectivity).where(connectivity.c.device_id == device_id))).first()
        return state_of(row) if row else None

    async def disconnect_counts(self, device_id: str, now: datetime) -> dict[str, int]:
        """Disconnects (refused connects excluded) and abnormal ones in the last 24 h and 72 h."""
        reason = effective_reason()
        abnormal = reason.in_([int(r) for r in ABNORMAL])

        def count(hours: int, *extra: Any) -> Any:
            since = now - timedelta(hours=hours)
            return func.count().filter(connection_log.c.time >= since, *extra)

        row = (await self._conn.execute(select(
            count(24).label("d24"), count(72).label("d72"), count(24, abnormal).label("a24"),
            count(72, abnormal).label("a72")).where(
            connection_log.c.device_id == device_id, connection_log.c.kind == int(Kind.DISCONNECTED),
            connection_log.c.reason != int(DisconnectReason.AUTH_REFUSED),
            connection_log.c.time >= now - timedelta(hours=72)))).one()
        return {"24h": row.d24, "72h": row.d72, "abnormal_24h": row.a24, "abnormal_72h": row.a72}

    async def log_page(self, device_id: str, start: datetime, end: datetime, after: Sequence[Any] | None,
                       limit: int, condition: Any = None) -> list[Any]:
        """Newest first; keyset (time, session_id, kind) descending; `condition` from the request's filter."""
        c = connection_log.c
        query = select(c.kind, c.time, c.session_id, c.client_id, c.remote_address, c.protocol,
                       effective_reason().label("reason"), c.detail).where(
            c.device_id == device_id, c.kind.in_([int(Kind.CONNECTED), int(Kind.DISCONNECTED)]),
            c.time >= start, c.time < end)
        if condition is not None:
            query = query.where(condition)
        if after is not None:
            t, session_id, kind = after
            query = query.where(or_(c.time < t, and_(c.time == t, or_(
                c.session_id < session_id, and_(c.session_id == session_id, c.kind < kind)))))
        query = query.order_by(c.time.desc(), c.session_id.desc(), c.kind.desc()).limit(limit)
        return list((await self._conn.execute(query)).all())

    async def save_health(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Latest heartbeat per device: only a newer message (by stream sequence) replaces it."""
        if not rows:
            return
        statement = pg_insert(device_health).values(list(rows))
        await self._conn.execute(statement.on_conflict_do_update(
            index_elements=["device_id"],
            set_={k: statement.excluded[k] for k in ("tenant_id", "report_time", "stream_seq", "health")},
            where=device_health.c.stream_seq < statement.excluded.stream_seq))

    async def health(self, device_id: str) -> Row[Any] | None:
        return (await self._conn.execute(select(device_health).where(device_health.c.device_id == device_id))).first()

    async def device_known(self, device_id: str) -> bool:
        return (await self._conn.execute(select(twins.c.device_id).where(twins.c.device_id == device_id))).first() \
            is not None

