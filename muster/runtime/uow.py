"""Unit of work: one scoped transaction, the repositories bound to it, and the events it emits.

A handler changes state through repositories and calls `emit`; `commit` writes the emitted events
to the outbox in the same transaction, so the state change and its events commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from muster.events.v1.event_pb2 import Event
from muster.runtime.db import Database, Scope, apply_scope, is_transient, unavailable_when_unreachable
from muster.runtime.errors import Unavailable
from muster.runtime.events import new_event
from muster.runtime.outbox import OutboxTables


class UnitOfWork(AbstractAsyncContextManager["UnitOfWork"]):
    """Subclass it per service to attach repositories in `_bind`."""

    def __init__(self, db: Database, outbox: OutboxTables, scope: Scope, *, source: str,
                 published: asyncio.Event | None = None) -> None:
        self._db = db
        self._outbox = outbox
        self.scope = scope
        self._source = source
        self._published = published
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._events: list[Event] = []
        self.committed = False

    @property
    def connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._conn

    async def __aenter__(self) -> Self:
        with unavailable_when_unreachable():
            try:
                self._conn = await self._db.engine.connect()
                self._tx = await self._conn.begin()
                await apply_scope(self._conn, self.scope)
            except Exception:
                await self._close()
                raise
        self._bind(self._conn)
        return self

    def _bind(self, conn: AsyncConnection) -> None:
        """Attach repositories to the open connection."""

    def emit(self, payload: Message, *, subject: str, tenant: str | None = None) -> Event:
        event = new_event(payload, source=self._source,
                          tenant=tenant if tenant is not None else self.scope.tenant, subject=subject)
        self._events.append(event)
        return event

    async def commit(self) -> None:
        assert self._tx is not None
        await self._outbox.append(self.connection, self._events)
        await self._tx.commit()
        self.committed = True
        if self._events and self._published is not None:
            self._published.set()  # wake the in-process relay now instead of at its next poll

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        lost = exc is not None and is_transient(exc)
        try:
            if self._tx is not None and self._tx.is_active and not lost:
                await self._tx.rollback()
        finally:
            await self._close()
        if lost:
            raise Unavailable("the database connection was lost; the change may or may not have been "
                              "applied: read it again before retrying", reason="DATABASE_UNAVAILABLE") from exc

    async def _close(self) -> None:
        conn, self._conn, self._tx, self._events = self._conn, None, None, []
        if conn is not None:
            with contextlib.suppress(Exception):  # a dead connection is discarded by the pool anyway
                await conn.close()
