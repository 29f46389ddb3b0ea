"""SQL of command delivery: the presence projection, the claim of due timers, applied replies.

The claim takes due commands with `FOR UPDATE SKIP LOCKED`, oldest deadline first (then oldest
command): a replica's transaction holds them until it has saved their next timer, and another
replica's claim skips them and, once committed, no longer sees them as due. So two replicas never
fire the same timer twice, and a crash before the commit leaves the timer due for the next pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.commands.delivery_tables import applied_replies, device_presence
from services.commands.domain import Command, CommandState
from services.commands.tables import commands

SEND_LOCK_NAMESPACE = "commands.send:"

CONNECTED = (2, 3)
"""`muster.twin.v1.Presence` values (as stored in `device_presence.presence`) of a device with a live
connection: ONLINE, and STALE (connected but silent for a while: a command may wake it, and the
acknowledgement timeout covers a connection that is in fact gone)."""

DUE_CHANNEL = "muster_commands_due"
"""NOTIFY channel of a nearer timer (payload: its epoch seconds): the migration's trigger signals it
whenever a command's `due_at` is set, so every replica's timer worker can wake for it at the commit."""


class DeliveryRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    # --- presence -----------------------------------------------------------------------------------

    async def record_presence(self, *, tenant_id: str, device_id: str, presence: int, since: datetime,
                              session_id: str) -> bool:
        """Store the device's presence unless a newer one is stored already; whether it was stored."""
        statement = pg_insert(device_presence).values(
            device_id=device_id, tenant_id=tenant_id, presence=presence, since=since, session_id=session_id,
            update_time=func.now())
        row = (await self._conn.execute(statement.on_conflict_do_update(
            index_elements=["device_id"],
            set_={"tenant_id": statement.excluded.tenant_id, "presence": statement.excluded.presence,
                  "since": statement.excluded.since, "session_id": statement.excluded.session_id,
                  "update_time": func.now()},
            where=device_presence.c.since <= statement.excluded.since,
        ).returning(device_presence.c.device_id))).first()
        return row is not None

    async def online(self, device_id: str) -> bool:
        presence = (await self._conn.execute(select(device_presence.c.presence).where(
            device_presence.c.device_id == device_id))).scalar_one_or_none()
        return presence in CONNECTED

    async def due_now(self, device_id: str, now: datetime) -> int:
        """Make the device's waiting (PENDING) commands due now, so the timer worker sends them in
        order the moment the device is online; returns how many."""
        result = await self._conn.execute(update(commands).where(
            commands.c.device_id == device_id, commands.c.state == int(CommandState.PENDING),
            commands.c.due_at > now).values(due_at=now))
        return int(result.rowcount)

    # --- timers -------------------------------------------------------------------------------------

    async def claim_due(self, now: datetime, limit: int) -> Sequence[Row[Any]]:
        """Lock up to `limit` due commands (each row with an `online` column: its device's presence).

        A device's due commands go to one worker at a time: the devices with the oldest timers are
        first locked with a transaction-level advisory lock (tried, never waited for: a device another
        replica is sending to is skipped this pass), so commands waiting for one device leave in
        order even with several replicas. Only the first `limit` devices are tried, which bounds the
        locks a pass holds."""
        first_due = func.min(commands.c.due_at)
        oldest = (select(commands.c.device_id).where(commands.c.due_at <= now).group_by(commands.c.device_id)
                  .order_by(first_due).limit(limit).subquery())
        locked = select(oldest.c.device_id).where(func.pg_try_advisory_xact_lock(
            func.hashtextextended(func.concat(SEND_LOCK_NAMESPACE, oldest.c.device_id), 0)))
        devices = list((await self._conn.execute(locked)).scalars())
        if not devices:
            return []
        online = func.coalesce(device_presence.c.presence.in_(CONNECTED), literal(False)).label("online")
        statement = (
            select(commands, online)
            .select_from(commands.outerjoin(device_presence, device_presence.c.device_id == commands.c.device_id))
            .where(commands.c.due_at <= now, commands.c.device_id.in_(devices))
            .order_by(commands.c.due_at, commands.c.create_time)
            .limit(limit)
            .with_for_update(of=commands, skip_locked=True)
        )
        return (await self._conn.execute(statement)).all()

    async def rearm(self, command: Command) -> None:
        """Put back the timer of a command that was due early and had nothing to do (no version bump:
        the command did not change)."""
        deadline = command.next_deadline()
        await self._conn.execute(update(commands).where(commands.c.id == command.id).values(
            due_at=deadline.at if deadline else None, due_kind=deadline.kind.value if deadline else None))

    async def next_due(self) -> datetime | None:
        """The nearest timer of any command (for how long the worker may sleep)."""
        value: datetime | None = (await self._conn.execute(
            select(func.min(commands.c.due_at)).where(commands.c.due_at.is_not(None)))).scalar_one()
        return value

    # --- replies ------------------------------------------------------------------------------------

    async def first_application(self, stream_seq: int) -> bool:
        """Record that the reply at `stream_seq` is applied; False if it already was (a redelivery)."""
        row = (await self._conn.execute(pg_insert(applied_replies).values(stream_seq=stream_seq)
                                        .on_conflict_do_nothing().returning(applied_replies.c.stream_seq))).first()
        return row is not None

    async def prune_applied_replies(self, before: datetime) -> int:
        result = await self._conn.execute(delete(applied_replies).where(and_(applied_replies.c.applied_at < before)))
        return int(result.rowcount)
