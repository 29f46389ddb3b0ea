"""Heartbeats -> telemetry rows `health.<field>` (pure, with fakes): the twin's parser, ingest's checks."""

from __future__ import annotations

from datetime import UTC, datetime

from fakes.ingest import FakeMonotonic

from services.ingest.heartbeats import HeartbeatProcessor, heartbeat_points
from services.ingest.normalise import DeviceProfile, MetricSpec, MetricType
from services.ingest.payloads import Limits, Reason
from services.ingest.processing import Inbound
from services.ingest.ratelimit import RateLimiter

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROFILES = {"dev1": DeviceProfile("dev1", "acme")}


def beat(data: bytes, *, device: str = "dev1", seq: int = 1, deliveries: int = 1) -> Inbound:
    return Inbound(device, f"muster/v1/devices/{device}/heartbeat", data, seq, RECEIVED, deliveries)


def processor() -> HeartbeatProcessor:
    return HeartbeatProcessor(Limits(), RateLimiter(100.0, 100.0, 60.0), unknown_device_retries=3,
                              monotonic=FakeMonotonic())


def test_each_heartbeat_field_becomes_a_health_metric_at_the_receive_time() -> None:
    outcome = processor().process([beat(b'{"rssi": -67, "battery": 81, "fw": "1.2", "uptime": 3600}', seq=9)],
                                  PROFILES)
    assert outcome.rows == [("acme", "dev1", "health.battery", RECEIVED, 81.0, None, None, 9, -7),
                            ("acme", "dev1", "health.rssi", RECEIVED, -67.0, None, None, 9, -6),
                            ("acme", "dev1", "health.uptime", RECEIVED, 3600.0, None, None, 9, -2)]
    assert outcome.errors == [] and outcome.retry == [] and not outcome.rejected


def test_heartbeat_values_never_share_a_key_with_telemetry_values() -> None:
    """Telemetry positions count up from 0; heartbeat positions are negative, distinct per field and
    ascending in the contract's field order (the order a query returns them in)."""
    points = heartbeat_points({"battery": 1, "rssi": 2, "cpu": 3, "memory": 4, "disk": 5, "uptime": 6,
                               "temperature": 7}, RECEIVED)
    positions = [p.position for p in points]
    assert positions == sorted(positions) and positions[-1] < 0 and len(set(positions)) == 7


def test_a_malformed_heartbeat_stores_nothing_and_is_counted_but_not_answered_twice() -> None:
    outcome = processor().process([beat(b'{"battery": "full", "rssi": -60}'), beat(b"not json", seq=2)], PROFILES)
    assert outcome.rows == []
    assert outcome.errors == []  # the twin answers on the errors topic
    assert outcome.rejected == {"INVALID_VALUE": 1, "NOT_JSON": 1}


def test_a_template_that_defines_a_health_metric_checks_it() -> None:
    profiles = {"dev1": DeviceProfile("dev1", "acme", {"health.temperature": MetricSpec(MetricType.NUMBER, 0, 60)})}
    outcome = processor().process([beat(b'{"temperature": 75, "cpu": 20}')], profiles)
    assert [r[2] for r in outcome.rows] == ["health.cpu"]
    assert outcome.rejected == {Reason.OUT_OF_RANGE: 1} and outcome.errors == []


def test_a_heartbeat_of_a_device_not_known_yet_is_redelivered() -> None:
    outcome = processor().process([beat(b'{"battery": 50}', device="ghost", deliveries=1),
                                   beat(b'{"battery": 50}', device="ghost", deliveries=3)], PROFILES)
    assert outcome.retry == [0] and outcome.rows == []
    assert outcome.rejected == {Reason.UNKNOWN_DEVICE: 1} and outcome.errors == []
