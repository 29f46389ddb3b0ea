"""Reading a `LatestTelemetryChanged` event on the registry side: one entry per sensor (the newest
when an event repeats one), values as JSON, in one sorted order; other events and tenantless events
write nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.struct_pb2 import Value

from muster.ingest.v1 import events_pb2 as iev
from muster.runtime.events import new_event
from services.registry.telemetry_consumer import apply_event, last_seen_of

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def reading(metric: str, at: datetime, value: Value) -> iev.LatestReading:
    r = iev.LatestReading(metric=metric, value=value)
    r.time.FromDatetime(at)
    return r


def test_the_newest_reading_per_sensor_wins_and_entries_are_sorted() -> None:
    payload = iev.LatestTelemetryChanged(devices=[
        iev.DeviceLatestTelemetry(device="devices/d2", readings=[reading("temp", T0, Value(number_value=2.0))]),
        iev.DeviceLatestTelemetry(device="devices/d1", readings=[
            reading("temp", T0 + timedelta(seconds=5), Value(number_value=21.5)),
            reading("door", T0, Value(bool_value=True))]),
        iev.DeviceLatestTelemetry(device="devices/d1", readings=[reading("temp", T0, Value(number_value=9.0))]),
    ])
    entries = last_seen_of(payload)
    assert [(e.device_id, e.key, json.loads(e.value_json), e.seen) for e in entries] == [
        ("d1", "door", True, T0), ("d1", "temp", 21.5, T0 + timedelta(seconds=5)), ("d2", "temp", 2.0, T0)]


class RecordingConnection:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def execute(self, statement: Any, params: Any = None) -> Any:
        self.calls.append((statement, params))
        return type("Result", (), {"rowcount": 0})()


async def test_other_events_and_events_without_a_tenant_write_nothing() -> None:
    conn = RecordingConnection()
    changed = iev.LatestTelemetryChanged(devices=[iev.DeviceLatestTelemetry(
        device="devices/d1", readings=[reading("temp", T0, Value(number_value=1.0))])])
    await apply_event(new_event(iev.LatestReading(), source="ingest", tenant="acme", subject="x"), conn)  # type: ignore[arg-type]
    await apply_event(new_event(changed, source="ingest", tenant="", subject="x"), conn)  # type: ignore[arg-type]
    assert conn.calls == []
    await apply_event(new_event(changed, source="ingest", tenant="acme", subject="x"), conn)  # type: ignore[arg-type]
    ((_, params),) = conn.calls
    assert params["tenant"] == "acme" and params["devices"] == ["d1"] and params["keys"] == ["temp"]
