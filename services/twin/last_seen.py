"""`last_seen` from any device traffic, written in batches (never one UPDATE per message), and the
periodic sweep that marks silent ONLINE devices STALE.

- Twin topics (`twin/reported`, `twin/get`): the twin's own inbox batches are observed here in memory
  and flushed every `interval` in one statement (losing a few seconds of last_seen on a crash is fine:
  the next message sets it again).
- Telemetry: ingest's `LatestTelemetryChanged` events (already coalesced per tenant every few seconds)
  are applied in one statement per event by a durable consumer.
- `status` and `heartbeat` set it in their own batch transactions (`status_inbox`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.ingest.v1 import events_pb2 as iev
from muster.runtime.db import Database, Scope
from muster.runtime.device_inbox import DeviceMessage, InboxHandler, InboxResult
from muster.runtime.outbox import OutboxTables
from services.twin.presence_writer import PresenceWriter

log = structlog.get_logger(__name__)

TELEMETRY_DURABLE = "twin-latest-telemetry"
TELEMETRY_SUBJECTS = ("muster.events.ingest.*.LatestTelemetryChanged",)


class LastSeenBuffer:
    """Newest time per device since the last flush."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def observe(self, messages: Sequence[DeviceMessage]) -> None:
        for message in messages:
            known = self._seen.get(message.device_id)
            if known is None or message.received > known:
                self._seen[message.device_id] = message.received

    def wrap(self, handler: InboxHandler) -> InboxHandler:
        """An inbox handler that also records its messages' devices as seen."""

        async def handle(messages: Sequence[DeviceMessage]) -> InboxResult:
            self.observe(messages)
            return await handler(messages)

        return handle

    def take(self) -> dict[str, datetime]:
        seen, self._seen = self._seen, {}
        return seen

    def give_back(self, seen: dict[str, datetime]) -> None:
        for device, at in seen.items():
            if device not in self._seen or self._seen[device] < at:
                self._seen[device] = at


async def flush(db: Database, outbox: OutboxTables, buffer: LastSeenBuffer) -> int:
    seen = buffer.take()
    if not seen:
        return 0
    try:
        async with db.transaction(Scope.platform_wide()) as conn:
            await PresenceWriter(conn, outbox).seen(seen)
    except Exception:
        buffer.give_back(seen)
        raise
    return len(seen)


def telemetry_handler(outbox: OutboxTables) -> Callable[[Event, AsyncConnection], Awaitable[None]]:
    """The `EventConsumer` handler for ingest's `LatestTelemetryChanged`: newest reading per device."""

    async def apply(event: Event, conn: AsyncConnection) -> None:
        payload = iev.LatestTelemetryChanged()
        if not event.payload.Unpack(payload):
            raise ValueError(f"event {event.id}: not a LatestTelemetryChanged")
        seen: dict[str, datetime] = {}
        for device in payload.devices:
            times = [r.time.ToDatetime(tzinfo=UTC) for r in device.readings]
            if times:
                seen[device.device.rsplit("/", 1)[-1]] = max(times)
        await PresenceWriter(conn, outbox).seen(seen)

    return apply


async def run_periodically(db: Database, outbox: OutboxTables, buffer: LastSeenBuffer, *, flush_interval: float,
                           sweep_interval: float, default_stale_after: timedelta) -> None:
    """Flush last_seen every `flush_interval`; sweep for silent devices every `sweep_interval`."""
    next_sweep = 0.0
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(flush_interval)
        try:
            await flush(db, outbox, buffer)
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + sweep_interval
                async with db.transaction(Scope.platform_wide()) as conn:
                    stale = await PresenceWriter(conn, outbox).sweep(datetime.now(UTC), default_stale_after)
                if stale:
                    log.info("devices_stale", count=stale)
        except Exception as exc:  # the database away: try again next round
            log.warning("presence_maintenance_failed", error=repr(exc))
