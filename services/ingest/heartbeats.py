"""Heartbeats kept as telemetry: each field of a device's heartbeat becomes a metric `health.<field>`
(`health.battery`, `health.rssi`, ...) at the time the platform received it, stored and queried like any
telemetry (the twin keeps only the latest heartbeat; this is the history).

The heartbeat is read by the contract's own parser (`muster.runtime.device_heartbeat`), so ingest keeps
exactly the heartbeats the twin accepts. The twin answers refused heartbeats on the device's `errors`
topic; ingest, the second reader of the same message, only counts its refusals (metrics), so a device
hears about a bad heartbeat once.

Rows are keyed (device, ts, stream sequence, idx) like telemetry, but the sequence is the heartbeat
stream's: a heartbeat value's idx is negative (its field's place in `FIELDS` minus their number: -7 for
battery ... -1 for temperature, so a query lists them in `FIELDS` order), so it can never take the key of
a telemetry value (idx >= 0) with the same sequence number and time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from muster.runtime.device_heartbeat import FIELDS, Refusal, parse_heartbeat
from services.ingest.normalise import DeviceProfile, normalise
from services.ingest.payloads import Point, Rejection
from services.ingest.processing import BatchProcessor, Inbound, Outcome, TelemetryRow, row

METRIC_PREFIX = "health."


def heartbeat_points(values: Mapping[str, float], received: datetime) -> list[Point]:
    """One point per heartbeat field, `health.<field>`, at the receive time."""
    return [Point(position - len(FIELDS), received, METRIC_PREFIX + name, values[name])
            for position, name in enumerate(FIELDS) if name in values]


class HeartbeatProcessor(BatchProcessor[TelemetryRow]):
    """Telemetry rows from heartbeats, through the same device checks, rate limit and template checks."""

    what = "heartbeat"

    def process(self, batch: Sequence[Inbound], profiles: Mapping[str, DeviceProfile]) -> Outcome[TelemetryRow]:
        outcome = super().process(batch, profiles)
        outcome.errors.clear()  # the twin answers the device; counted in outcome.rejected all the same
        return outcome

    def convert(self, message: Inbound, profile: DeviceProfile,
                now: datetime) -> tuple[list[TelemetryRow], list[Rejection]]:
        parsed = parse_heartbeat(message.data)
        if isinstance(parsed, Refusal):
            return [], [Rejection(parsed.code, parsed.message)]
        kept, refused = normalise(heartbeat_points(parsed, message.received), profile)
        return [row(profile, point, message.stream_seq) for point in kept], refused
