"""The timer worker: fires the due timers of commands (acknowledgement and execution timeouts, time
to live, retry pauses) and sends what is ready to go, in every replica.

Timers live in PostgreSQL (`commands.due_at`), so they survive restarts. Each pass claims a small
batch of due rows with `FOR UPDATE SKIP LOCKED` (two replicas never fire the same timer twice),
applies `delivery.advance` to each, saves them with their next timer and events in one transaction,
and only after the commit publishes the commands that went SENT (a crash in between is covered by the
acknowledgement timeout, which sends them again). Between passes it sleeps until the nearest timer,
at most `poll_interval`, and wakes early when a nearer one appears (`nudge`: the `DUE_CHANNEL`
listener, or this process directly).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from muster.runtime.db import Scope, is_transient
from muster.runtime.device_publisher import DeliveryFailed
from services.commands.delivery import advance, command_levels, command_payload
from services.commands.domain import Command
from services.commands.events import emit_transitions
from services.commands.repository import command_from_row
from services.commands.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


class Publisher(Protocol):
    async def publish(self, device_id: str, levels: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> None: ...


@dataclass(frozen=True)
class TimerSettings:
    batch_size: int = 50
    poll_interval: float = 5.0  # the longest sleep, should a notification be lost
    retry_delay: float = 1.0  # after a failed pass (e.g. the database is away)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TimerWorker:
    def __init__(self, uow: UnitOfWorkFactory, publisher: Publisher,
                 settings: TimerSettings = TimerSettings(), clock: Clock = _utcnow) -> None:
        self._uow = uow
        self._publisher = publisher
        self._settings = settings
        self._now = clock
        self._wake = asyncio.Event()
        self._planned: datetime | None = None  # when the current sleep ends

    def nudge(self, at: datetime | None = None) -> None:
        """A timer at `at` (None: now) was set: wake up if that is before the planned wake-up."""
        if at is None or self._planned is None or at < self._planned:
            self._wake.set()

    def on_notify(self, payload: str) -> None:
        """A `DUE_CHANNEL` notification: a timer at that epoch time ("": unknown, look now)."""
        try:
            at = datetime.fromtimestamp(float(payload), UTC) if payload else None
        except ValueError:
            at = None
        self.nudge(at)

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before the pass, so a nudge during it is not lost
            try:
                fired, next_due = await self.run_once()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("timer_pass_failed")
                else:
                    log.warning("timer_pass_retry", error=repr(exc))
                await asyncio.sleep(self._settings.retry_delay)
                continue
            if fired >= self._settings.batch_size:
                continue  # more may be due right now
            await self._sleep_until(next_due)

    async def _sleep_until(self, next_due: datetime | None) -> None:
        timeout = self._settings.poll_interval
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - self._now()).total_seconds()))
        self._planned = self._now() + timedelta(seconds=timeout)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._planned = None

    async def run_once(self) -> tuple[int, datetime | None]:
        """One pass: claim, fire, commit, publish. Returns how many commands it claimed and the nearest
        timer left."""
        now = self._now()
        outgoing: list[Command] = []
        async with self._uow(Scope.platform_wide()) as uow:
            rows = await uow.delivery.claim_due(now, self._settings.batch_size)
            for row in rows:
                before = command_from_row(row)
                step = advance(before, online=bool(row.online), now=now)
                if step.command is before:  # made due early (a presence change): nothing to do yet
                    await uow.delivery.rearm(before)
                    continue
                await uow.commands.save(step.command)
                emit_transitions(uow, before, step.command)
                if step.send:
                    outgoing.append(step.command)
            next_due = await uow.delivery.next_due()
            await uow.commit()
        if outgoing:
            await self._publish(outgoing)
        return len(rows), next_due

    async def _publish(self, sent: list[Command]) -> None:
        """In claim order (oldest first); the packets leave in call order, the PUBACKs are awaited together."""
        results = await asyncio.gather(
            *(self._publisher.publish(c.device_id, command_levels(c), command_payload(c), qos=1) for c in sent),
            return_exceptions=True)
        for command, result in zip(sent, results, strict=True):
            if isinstance(result, DeliveryFailed):
                log.warning("command_publish_failed", command=command.name, attempt=command.attempts,
                            error=str(result))
            elif isinstance(result, BaseException):
                log.error("command_publish_failed", command=command.name, attempt=command.attempts,
                          error=repr(result))
