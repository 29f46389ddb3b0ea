"""How WaitCommand learns that a command finished, on whichever replica it finished.

PostgreSQL LISTEN/NOTIFY: the transaction that moves a command to a terminal state NOTIFYs
`FINISHED_CHANNEL` with the command id (`CommandRepository.save`), delivered to every listener when
that transaction commits, never before and never for a rollback. Each process holds ONE listening
connection (`FinishedListener`) and wakes the local waiters of that id (`Waiters`). Chosen over NATS
(the outbox relay adds up to its poll delay, and the event arrives after the commit anyway) and over
a plain poll (one query per waiter per interval). A waiter still re-reads the command every
`poll_seconds`, so a notification lost with the listening connection costs latency, not a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import asyncpg
import structlog

from services.commands.tables import FINISHED_CHANNEL

log = structlog.get_logger(__name__)


class Waiters:
    """Command id -> the events of the calls waiting for it, in this process."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, command_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `command_id` may have finished (register BEFORE reading the command,
        so a finish between the read and the wait is not missed)."""
        event = asyncio.Event()
        self._waiting.setdefault(command_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiting.get(command_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[command_id]

    def notify(self, command_id: str) -> None:
        for event in self._waiting.get(command_id, ()):
            event.set()

    def notify_all(self) -> None:
        """After the listening connection was lost: everyone re-reads."""
        for events in self._waiting.values():
            for event in events:
                event.set()

    def __len__(self) -> int:
        return sum(len(events) for events in self._waiting.values())


class FinishedListener:
    """The process's LISTEN connection; reconnects forever (a PostgreSQL restart must not end it)."""

    def __init__(self, dsn: str, waiters: Waiters, *, retry_seconds: float = 1.0,
                 channels: Mapping[str, Callable[[str], None]] | None = None) -> None:
        """`channels`: more channels on the same connection (e.g. the timers' `DUE_CHANNEL`), each
        callback also called with "" after every (re)connect, since notifications may have been missed."""
        self._dsn = dsn
        self._waiters = waiters
        self._channels = dict(channels or {})
        self._retry = retry_seconds
        self.listening = asyncio.Event()

    async def run(self) -> None:
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("commands_listener_connect_failed", error=repr(exc))
                await asyncio.sleep(self._retry)
                continue
            try:
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(FINISHED_CHANNEL, self._on_notify)
                for channel, callback in self._channels.items():
                    await conn.add_listener(channel, _forward(callback))
                self.listening.set()
                self._waiters.notify_all()  # anything that finished while we were not listening
                for callback in self._channels.values():
                    callback("")
                await lost.wait()
                log.warning("commands_listener_lost")
            finally:
                self.listening.clear()
                if not conn.is_closed():
                    await conn.close()
            self._waiters.notify_all()
            await asyncio.sleep(self._retry)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._waiters.notify(payload)


def _forward(callback: Callable[[str], None]) -> Callable[[Any, int, str, str], None]:
    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        callback(payload)

    return on_notify
