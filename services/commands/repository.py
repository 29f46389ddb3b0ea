"""Commands persistence: SQL lives here. Works on the connection of the unit of work that owns it, so a
state change commits (or rolls back) with its events; row-level security limits every statement to the
unit of work's tenant.

`save` keeps the row's one due timer (`due_at`, `due_kind`) equal to the domain's `next_deadline()`
and, for a command reaching a terminal state, NOTIFYs `FINISHED_CHANNEL` (delivered at commit), so
WaitCommand on every replica wakes at once. Every writer goes through `save`: it cannot forget either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.runtime.errors import Aborted
from muster.runtime.filtering import to_sql
from muster.runtime.listing import Page
from muster.runtime.pagination import keyset_condition, order_clauses
from services.commands.domain import TERMINAL_STATES, Command, CommandState, RetryPolicy, Transition
from services.commands.tables import FINISHED_CHANNEL, commands


class DuplicateRequest(Exception):
    """Another command of the tenant already has this request id (the unique index said so)."""


def history_to_json(history: Sequence[Transition]) -> list[dict[str, Any]]:
    return [{"time": t.time.isoformat(), "from": int(t.from_state) if t.from_state is not None else None,
             "to": int(t.to_state), "reason": t.reason, "changed": t.changed} for t in history]


def history_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[Transition, ...]:
    return tuple(Transition(time=datetime.fromisoformat(i["time"]),
                            from_state=CommandState(i["from"]) if i["from"] is not None else None,
                            to_state=CommandState(i["to"]), reason=i["reason"], changed=i["changed"])
                 for i in items)


def command_from_row(row: Row[Any]) -> Command:
    return Command(
        tenant_id=row.tenant_id, device_id=row.device_id, id=row.id, command=row.command,
        parameters=row.parameters, creator=row.creator, request_id=row.request_id, request_hash=row.request_hash,
        ttl=row.ttl, delivery_timeout=row.delivery_timeout, execution_timeout=row.execution_timeout,
        retry=RetryPolicy(max_attempts=row.max_attempts, initial_backoff=row.initial_backoff,
                          multiplier=row.backoff_multiplier, max_backoff=row.max_backoff),
        create_time=row.create_time, state=CommandState(row.state), update_time=row.update_time,
        send_time=row.send_time, deliver_time=row.deliver_time, finish_time=row.finish_time,
        ack_deadline=row.ack_deadline, execution_deadline=row.execution_deadline, retry_time=row.retry_time,
        attempts=row.attempts, output=row.output, error=row.error, history=history_from_json(row.history),
        version=row.version)


def _mutable(command: Command) -> dict[str, Any]:
    """The columns a transition may change (and the due timer it implies)."""
    deadline = command.next_deadline()
    return {"state": int(command.state), "attempts": command.attempts, "update_time": command.update_time,
            "send_time": command.send_time, "deliver_time": command.deliver_time,
            "finish_time": command.finish_time, "ack_deadline": command.ack_deadline,
            "execution_deadline": command.execution_deadline, "retry_time": command.retry_time,
            "due_at": deadline.at if deadline else None, "due_kind": deadline.kind.value if deadline else None,
            "output": dict(command.output) if command.output is not None else None, "error": command.error,
            "history": history_to_json(command.history)}


class CommandRepository:
    t = commands
    columns: Mapping[str, ColumnElement[Any]] = {
        "state": t.c.state, "command": t.c.command, "creator": t.c.creator, "create_time": t.c.create_time,
        "update_time": t.c.update_time, "finish_time": t.c.finish_time,
    }

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, command_id: str, *, device_id: str | None = None, lock: bool = False) -> Command | None:
        """`device_id` set: only if it is that device's command. `lock`: FOR UPDATE, so concurrent
        transitions of one command serialise instead of failing on the version check."""
        stmt = select(self.t).where(self.t.c.id == command_id)
        if device_id is not None:
            stmt = stmt.where(self.t.c.device_id == device_id)
        if lock:
            stmt = stmt.with_for_update()
        row = (await self._conn.execute(stmt)).first()
        return command_from_row(row) if row else None

    async def unfinished(self, tenant_id: str, device_id: str) -> list[Command]:
        """The device's commands not in a terminal state, oldest first, locked FOR UPDATE."""
        stmt = (select(self.t).where(self.t.c.tenant_id == tenant_id, self.t.c.device_id == device_id,
                                     self.t.c.state.not_in([int(s) for s in TERMINAL_STATES]))
                .order_by(self.t.c.create_time, self.t.c.id).with_for_update())
        return [command_from_row(row) for row in (await self._conn.execute(stmt)).all()]

    async def find_by_request_id(self, request_id: str) -> Command | None:
        row = (await self._conn.execute(select(self.t).where(self.t.c.request_id == request_id))).first()
        return command_from_row(row) if row else None

    async def add(self, command: Command) -> None:
        """Raises DuplicateRequest when the tenant already used the command's request id."""
        values = {"id": command.id, "tenant_id": command.tenant_id, "device_id": command.device_id,
                  "command": command.command, "parameters": dict(command.parameters), "creator": command.creator,
                  "request_id": command.request_id, "request_hash": command.request_hash, "ttl": command.ttl,
                  "delivery_timeout": command.delivery_timeout, "execution_timeout": command.execution_timeout,
                  "max_attempts": command.retry.max_attempts, "initial_backoff": command.retry.initial_backoff,
                  "backoff_multiplier": command.retry.multiplier, "max_backoff": command.retry.max_backoff,
                  "create_time": command.create_time, "version": command.version, **_mutable(command)}
        if command.ready_to_send(command.create_time):  # due at once: the timer worker sends it if the
            values["due_at"] = command.create_time      # device is online, else re-arms its expiry (delivery.py)
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(self.t).values(**values))
        except IntegrityError as exc:
            if "commands_request_id" in str(exc.orig):
                raise DuplicateRequest(command.request_id) from exc
            raise

    async def save(self, command: Command) -> Command:
        """Write a transition made on the stored `command.version`; returns it with the next version.
        ABORTED if the row moved meanwhile (read it with `lock=True` to avoid that)."""
        result = await self._conn.execute(
            update(self.t).where(self.t.c.id == command.id, self.t.c.version == command.version)
            .values(version=command.version + 1, **_mutable(command)))
        if result.rowcount != 1:
            raise Aborted(f"{command.name} was changed concurrently: read it again and retry",
                          reason="COMMAND_CHANGED")
        if command.terminal:
            await self._conn.execute(select(func.pg_notify(FINISHED_CHANNEL, command.id)))
        return replace(command, version=command.version + 1)

    async def list(self, query: Page, *, device_id: str | None) -> list[Command]:
        stmt = select(self.t)
        if device_id is not None:
            stmt = stmt.where(self.t.c.device_id == device_id)
        if query.filter is not None:
            stmt = stmt.where(to_sql(query.filter, self.columns))
        if query.after is not None:
            stmt = stmt.where(keyset_condition(query.order, self.columns, self.t.c.id, query.after))
        stmt = stmt.order_by(*order_clauses(query.order, self.columns, self.t.c.id)).limit(query.fetch)
        return [command_from_row(r) for r in (await self._conn.execute(stmt)).all()]
