"""The edge's tables (schema `ingest`): the credentials projection and the live connections, read and
written platform-wide (device ids are global; the callout knows no tenant before the lookup).

Ordering: a connect locks its device row FOR SHARE while it decides and records its connection; an
event that cuts a device updates that row first (waiting for such connects to commit) and then takes
every recorded connection. So a connect either sees the new state and is refused, or its connection
is recorded before the event reads the list, and is kicked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.bulk_insert import insert_rows
from services.ingest.edge.authorization import DeviceCredentials, SecretHash
from services.ingest.tables import edge_connections, edge_devices


@dataclass(frozen=True)
class Connection:
    """One authorized connection: where it lives (server id + connection id) and until when."""

    server_id: str
    client_id: int
    device_id: str
    tenant_id: str
    connected_at: datetime
    expires_at: datetime


def secrets_to_json(secrets: Iterable[SecretHash]) -> list[dict[str, Any]]:
    return [{"h": s.hmac_sha256.lower(), "exp": s.expire_time.isoformat() if s.expire_time else None}
            for s in secrets]


def secrets_from_json(raw: Sequence[dict[str, Any]]) -> tuple[SecretHash, ...]:
    return tuple(SecretHash(str(item["h"]), datetime.fromisoformat(item["exp"]) if item.get("exp") else None)
                 for item in raw)


async def lock_devices(conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, DeviceCredentials]:
    """The devices' projection rows, locked FOR SHARE until the transaction ends."""
    if not device_ids:
        return {}
    t = edge_devices
    rows = (await conn.execute(
        select(t.c.device_id, t.c.tenant_id, t.c.state, t.c.deleted, t.c.secrets)
        .where(t.c.device_id.in_(sorted(set(device_ids)))).with_for_update(read=True)
    )).all()
    return {row.device_id: DeviceCredentials(row.device_id, row.tenant_id, row.state, row.deleted,
                                             secrets_from_json(row.secrets)) for row in rows}


async def record_connections(conn: AsyncConnection, connections: Sequence[Connection]) -> None:
    if not connections:
        return
    stmt = pg_insert(edge_connections)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[edge_connections.c.server_id, edge_connections.c.client_id],
        set_={"device_id": stmt.excluded.device_id, "tenant_id": stmt.excluded.tenant_id,
              "connected_at": stmt.excluded.connected_at, "expires_at": stmt.excluded.expires_at},
    ), [vars(c) for c in connections])


async def apply_lifecycle(conn: AsyncConnection, *, device_id: str, tenant_id: str, state: int | None,
                          deleted: bool, at: datetime) -> bool:
    """Record a lifecycle event unless a newer one was applied already (replicas of the consumer may
    apply events out of order); `state=None` keeps the state (a deletion). True when applied."""
    t = edge_devices
    values: dict[str, Any] = {"device_id": device_id, "tenant_id": tenant_id, "deleted": deleted, "state_time": at,
                              "state": state or 0}
    updates: dict[str, Any] = {"tenant_id": tenant_id, "deleted": deleted, "state_time": at}
    if state is not None:
        updates["state"] = state
    if deleted:
        values["secrets"] = updates["secrets"] = []
    stmt = pg_insert(t).values(values)
    applied = (await conn.execute(stmt.on_conflict_do_update(
        index_elements=[t.c.device_id], set_=updates,
        where=t.c.state_time.is_(None) | (t.c.state_time <= stmt.excluded.state_time),
    ).returning(t.c.device_id))).first()
    return applied is not None


_LIFECYCLE_FORWARD = (  # apply_lifecycle's rule for rows that are not deletions
    "ON CONFLICT (device_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, deleted = EXCLUDED.deleted, "
    "state_time = EXCLUDED.state_time, state = EXCLUDED.state "
    "WHERE edge_devices.state_time IS NULL OR edge_devices.state_time <= EXCLUDED.state_time")


async def apply_lifecycles(conn: AsyncConnection, rows: Sequence[tuple[str, str, int, datetime]]) -> None:
    """`apply_lifecycle` (not a deletion) for many (device_id, tenant_id, state, at) in one statement;
    at most one row per device."""
    await insert_rows(conn, edge_devices, [
        {"device_id": device_id, "tenant_id": tenant_id, "deleted": False, "state_time": at, "state": state}
        for device_id, tenant_id, state, at in rows], on_conflict=_LIFECYCLE_FORWARD)


async def apply_credentials(conn: AsyncConnection, *, device_id: str, tenant_id: str,
                            secrets: Sequence[SecretHash], at: datetime) -> bool:
    """Replace the device's valid secret hashes unless newer ones were applied (or it is deleted)."""
    t = edge_devices
    stmt = pg_insert(t).values(device_id=device_id, tenant_id=tenant_id, secrets=secrets_to_json(secrets),
                               credentials_time=at)
    applied = (await conn.execute(stmt.on_conflict_do_update(
        index_elements=[t.c.device_id], set_={"secrets": stmt.excluded.secrets, "credentials_time": at},
        where=~t.c.deleted & (t.c.credentials_time.is_(None) | (t.c.credentials_time <= at)),
    ).returning(t.c.device_id))).first()
    return applied is not None


async def take_connections(conn: AsyncConnection, device_id: str) -> list[Connection]:
    """Remove and return every recorded connection of the device (to be kicked)."""
    t = edge_connections
    rows = (await conn.execute(delete(t).where(t.c.device_id == device_id).returning(*t.c))).all()
    return [Connection(r.server_id, r.client_id, r.device_id, r.tenant_id, r.connected_at, r.expires_at)
            for r in rows]


async def prune_connections(conn: AsyncConnection) -> int:
    """Forget connections whose JWT has expired (the server has closed them)."""
    t = edge_connections
    result = await conn.execute(delete(t).where(t.c.expires_at < func.now()))
    return int(result.rowcount or 0)
