"""Sensors' `last_value` / `last_seen`, kept by ingest's coalesced `LatestTelemetryChanged` events.

A durable, idempotent `EventConsumer` (the event id is recorded with the writes). The registry never
reads ingest's tables: the events are the contract. Rules: only sensors that exist are touched (a
reading of a metric without a sensor creates nothing), only within the event's tenant, and only
forward in time (`last_seen` strictly newer), so a late or redelivered event never moves a sensor
back. These two output-only fields change neither the sensor's `update_time` nor its etag: an
operator's conditional update must not fail because telemetry arrived meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToJson
from sqlalchemy import ARRAY, DateTime, Text, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.ingest.v1 import events_pb2 as iev

DURABLE = "registry-latest-telemetry"
FILTER_SUBJECTS = ("muster.events.ingest.*.LatestTelemetryChanged",)


@dataclass(frozen=True)
class LastSeen:
    """The newest reading of one sensor (device id + metric key) an event carries."""

    device_id: str
    key: str
    value_json: str  # the JSON text of the google.protobuf.Value
    seen: datetime


def last_seen_of(payload: iev.LatestTelemetryChanged) -> list[LastSeen]:
    """One entry per (device, metric), the newest if the event repeats one; sorted (one lock order)."""
    newest: dict[tuple[str, str], LastSeen] = {}
    for device in payload.devices:
        device_id = device.device.removeprefix("devices/")
        for reading in device.readings:
            entry = LastSeen(device_id, reading.metric, MessageToJson(reading.value, indent=None),
                             reading.time.ToDatetime(tzinfo=UTC))
            current = newest.get((device_id, reading.metric))
            if current is None or entry.seen > current.seen:
                newest[(device_id, reading.metric)] = entry
    return [newest[key] for key in sorted(newest)]


_UPDATE = text("""
UPDATE registry.sensors s SET last_value = v.value::jsonb, last_seen = v.seen
FROM unnest(:devices, :keys, :values, :seen) AS v(device_id, key, value, seen)
WHERE s.tenant_id = :tenant AND s.device_id = v.device_id AND s.key = v.key
  AND (s.last_seen IS NULL OR s.last_seen < v.seen)
""").bindparams(bindparam("devices", type_=ARRAY(Text)), bindparam("keys", type_=ARRAY(Text)),
                bindparam("values", type_=ARRAY(Text)), bindparam("seen", type_=ARRAY(DateTime(timezone=True))))


async def record_last_seen(conn: AsyncConnection, tenant: str, entries: list[LastSeen]) -> int:
    """Move the tenant's existing sensors forward to these readings; returns how many moved."""
    if not entries:
        return 0
    params: dict[str, Any] = {"tenant": tenant, "devices": [e.device_id for e in entries],
                              "keys": [e.key for e in entries], "values": [e.value_json for e in entries],
                              "seen": [e.seen for e in entries]}
    result = await conn.execute(_UPDATE, params)
    return int(getattr(result, "rowcount", 0) or 0)


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler (platform scope; the event's tenant bounds what it touches)."""
    if event.type != "LatestTelemetryChanged":
        return
    payload = iev.LatestTelemetryChanged()
    if not event.payload.Unpack(payload):
        raise ValueError(f"event {event.id}: payload is not {payload.DESCRIPTOR.full_name}")
    if event.tenant:  # ingest stores no telemetry without a tenant; an event without one touches nothing
        await record_last_seen(conn, event.tenant, last_seen_of(payload))
