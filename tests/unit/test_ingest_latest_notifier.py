"""Coalescing of latest values into `LatestTelemetryChanged` events: grouped per tenant and device,
bounded in size, every value kind carried, one reading per device metric and round."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from muster.ingest.v1 import events_pb2 as iev
from services.ingest.latest_notifier import Reading, build_events

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def payload_of(event: object) -> iev.LatestTelemetryChanged:
    payload = iev.LatestTelemetryChanged()
    assert event.payload.Unpack(payload)  # type: ignore[attr-defined]
    return payload


def test_one_event_per_tenant_with_each_device_once() -> None:
    readings = [Reading("acme", "d2", "temp", T0, value_num=20.5), Reading("acme", "d1", "temp", T0, value_num=1.0),
                Reading("acme", "d1", "door", T0, value_bool=True), Reading("beta", "d9", "mode", T0, value_str="eco")]
    events = build_events(readings, max_readings=100)
    assert [(e.tenant, e.type, e.source, e.subject) for e in events] == [
        ("acme", "LatestTelemetryChanged", "ingest", "tenants/acme"),
        ("beta", "LatestTelemetryChanged", "ingest", "tenants/beta")]
    acme = payload_of(events[0])
    assert [(d.device, [r.metric for r in d.readings]) for d in acme.devices] == [
        ("devices/d1", ["door", "temp"]), ("devices/d2", ["temp"])]
    door, temp = acme.devices[0].readings
    assert door.value.bool_value is True and temp.value.number_value == 1.0
    assert door.time.ToDatetime(tzinfo=UTC) == T0
    assert payload_of(events[1]).devices[0].readings[0].value.string_value == "eco"


def test_events_are_chunked_at_max_readings_without_losing_any() -> None:
    readings = [Reading("acme", f"d{i:03}", m, T0 + timedelta(seconds=i), value_num=float(i))
                for i in range(25) for m in ("a", "b")]
    events = build_events(readings, max_readings=15)
    sizes = [sum(len(d.readings) for d in payload_of(e).devices) for e in events]
    assert sizes == [15, 15, 15, 5]
    seen = {(d.device, r.metric) for e in events for d in payload_of(e).devices for r in d.readings}
    assert len(seen) == 50
    # a device split across two events appears in both, each with its own readings
    first, second = payload_of(events[0]).devices[-1], payload_of(events[1]).devices[0]
    assert first.device == second.device == "devices/d007"
    assert [r.metric for r in first.readings] == ["a"] and [r.metric for r in second.readings] == ["b"]


def test_no_readings_no_events() -> None:
    assert build_events([], max_readings=10) == []
