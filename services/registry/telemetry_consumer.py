"""Sensors' `last_value` / `last_seen`, kept by ingest's coalesced `LatestTelemetryChanged` events.

A durable, idempotent `EventConsumer` (the event id is recorded with the writes). The registry never
reads ingest's tables: the events are the contract. Rules: only sensors that exist are touched (a
reading of a metric without a sensor creates nothing), only within the event's tenant, and only
forward in time (`last_seen` strictly newer), so a late or redelivered event never moves a sensor
back. These two output-only fields change neither the sensor's `update_time` nor its etag: an
operator's conditional update must not fail because telemetry arrived meanwhile.
"""

from __future__ import annotations

from datetime import UTC

from google.protobuf.json_format import MessageToJson
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.ingest.v1 import events_pb2 as iev
from services.registry.template_repository import SensorRepository
from services.registry.templates import LastSeen

DURABLE = "registry-latest-telemetry"
FILTER_SUBJECTS = ("muster.events.ingest.*.LatestTelemetryChanged",)


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


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler (platform scope; the event's tenant bounds what it touches)."""
    if event.type != "LatestTelemetryChanged":
        return
    payload = iev.LatestTelemetryChanged()
    if not event.payload.Unpack(payload):
        raise ValueError(f"event {event.id}: payload is not {payload.DESCRIPTOR.full_name}")
    if event.tenant:  # ingest stores no telemetry without a tenant; an event without one touches nothing
        await SensorRepository(conn).record_last_seen(event.tenant, last_seen_of(payload))
