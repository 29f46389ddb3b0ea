"""Tells the registry about new latest values, coalesced: `LatestTelemetryChanged` events.

The telemetry write path only marks the latest-value rows it changes as not notified (one column in
an upsert it runs anyway: no per-message cost). Every `interval` seconds this notifier claims the
marked rows (FOR UPDATE SKIP LOCKED, so replicas and concurrent writers never wait on it), marks them
notified and writes the events into ingest's outbox IN THE SAME TRANSACTION: a crash loses no change
(the marks roll back) and sends none twice. A write that lands after the claim marks its row again,
so the newest value always goes out in a later round. A device sending 10 messages/s therefore shows
up at most once per interval, with the newest value of each metric it sent.

Events: one per tenant and chunk of at most `max_readings` readings (the registry applies each event
in one transaction; a bounded event keeps that transaction short).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

import structlog
from google.protobuf.struct_pb2 import Value

from muster.events.v1.event_pb2 import Event
from muster.ingest.v1 import events_pb2 as iev
from muster.runtime.db import Database, Scope, is_transient
from muster.runtime.events import new_event
from muster.runtime.outbox import OutboxTables
from muster.runtime.timestamps import seconds_nanos
from services.ingest.repository import claim_changed_latest

log = structlog.get_logger(__name__)

SOURCE = "ingest"

@dataclass(frozen=True)
class Reading:
    """One latest value of one device metric, as stored (one of the three value columns is set)."""

    tenant_id: str
    device_id: str
    metric: str
    ts: datetime
    value_num: float | None = None
    value_bool: bool | None = None
    value_str: str | None = None

    def value(self) -> Value:
        if self.value_num is not None:
            return Value(number_value=self.value_num)
        if self.value_bool is not None:
            return Value(bool_value=self.value_bool)
        return Value(string_value=self.value_str or "")


def _reading(r: Reading) -> iev.LatestReading:
    reading = iev.LatestReading(metric=r.metric, value=r.value())
    reading.time.seconds, reading.time.nanos = seconds_nanos(r.ts)
    return reading


def build_events(readings: Iterable[Reading], *, max_readings: int) -> list[Event]:
    """Group readings by tenant then device into `LatestTelemetryChanged` events of at most
    `max_readings` readings (a device's readings may be split across two events of one round)."""
    events: list[Event] = []
    ordered = sorted(readings, key=lambda r: (r.tenant_id, r.device_id, r.metric))
    for tenant, of_tenant in groupby(ordered, key=lambda r: r.tenant_id):
        payload, count = iev.LatestTelemetryChanged(), 0
        for device, of_device in groupby(of_tenant, key=lambda r: r.device_id):
            entry: iev.DeviceLatestTelemetry | None = None
            for reading in of_device:
                if count == max_readings:
                    events.append(_event(tenant, payload))
                    payload, count, entry = iev.LatestTelemetryChanged(), 0, None
                if entry is None:
                    entry = payload.devices.add(device=f"devices/{device}")
                entry.readings.append(_reading(reading))
                count += 1
        if count:
            events.append(_event(tenant, payload))
    return events


def _event(tenant: str, payload: iev.LatestTelemetryChanged) -> Event:
    return new_event(payload, source=SOURCE, tenant=tenant, subject=f"tenants/{tenant}")


class LatestNotifier:
    def __init__(self, db: Database, outbox: OutboxTables, *, interval: float, claim_limit: int = 5000,
                 max_readings: int = 1000, published: asyncio.Event | None = None) -> None:
        self._db = db
        self._outbox = outbox
        self._interval = interval
        self._claim_limit = claim_limit
        self._max_readings = max_readings
        self._published = published

    async def flush_once(self) -> int:
        """Claim up to `claim_limit` changed latest values and emit their events; returns how many."""
        async with self._db.transaction(Scope.platform_wide()) as conn:
            rows = await claim_changed_latest(conn, self._claim_limit)
            readings: Sequence[Reading] = [Reading(*row) for row in rows]
            await self._outbox.append(conn, build_events(readings, max_readings=self._max_readings))
        if readings and self._published is not None:
            self._published.set()  # wake the relay now
        return len(readings)

    async def flush(self) -> int:
        """Everything changed so far, in rounds of `claim_limit`."""
        total = 0
        while (claimed := await self.flush_once()) > 0:
            total += claimed
            if claimed < self._claim_limit:
                break
        return total

    async def run(self) -> None:
        """Every `interval` until cancelled; a failed round is logged and retried at the next one."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                if count := await self.flush():
                    log.debug("latest_notified", readings=count)
            except Exception as exc:
                if not is_transient(exc) and not isinstance(exc, OSError | asyncio.TimeoutError):
                    log.exception("latest_notify_failed")
                else:
                    log.warning("latest_notify_retry", error=repr(exc))
