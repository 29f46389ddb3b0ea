"""Normalisation (metric_key_map, seed 000) and template checks, and the per-device rate limiter."""

from __future__ import annotations

from datetime import UTC, datetime

from services.ingest.normalise import DeviceProfile, MetricSpec, MetricType, merge_key_maps, normalise
from services.ingest.payloads import Point, Reason
from services.ingest.ratelimit import RateLimiter

T = datetime(2026, 11, 23, tzinfo=UTC)
PROFILE = DeviceProfile(
    "dev1", "acme",
    metrics={"temperature": MetricSpec(MetricType.NUMBER, -40.0, 125.0), "door": MetricSpec(MetricType.BOOL),
             "mode": MetricSpec(MetricType.STRING)},
    key_map={"port_3_temp": "temperature"})


def test_raw_keys_are_translated_and_unmapped_keys_pass_through() -> None:
    kept, refused = normalise([Point(0, T, "port_3_temp", 21.0), Point(1, T, "rssi", -70.0)], PROFILE)
    assert [(p.position, p.metric, p.value) for p in kept] == [(0, "temperature", 21.0), (1, "rssi", -70.0)]
    assert refused == []


def test_a_value_of_the_wrong_type_is_refused_and_the_rest_kept() -> None:
    kept, refused = normalise([Point(0, T, "door", 1.0), Point(1, T, "mode", "eco"), Point(2, T, "temperature", True)],
                              PROFILE)
    assert [p.metric for p in kept] == ["mode"]
    assert [r.code for r in refused] == [Reason.TYPE_MISMATCH, Reason.TYPE_MISMATCH]
    assert "expected a bool" in refused[0].message


def test_numbers_outside_the_template_range_are_refused_after_mapping() -> None:
    kept, refused = normalise([Point(0, T, "port_3_temp", 200.0), Point(1, T, "temperature", -40.0)], PROFILE)
    assert [p.value for p in kept] == [-40.0]
    assert [r.code for r in refused] == [Reason.OUT_OF_RANGE]
    assert "'temperature'" in refused[0].message and "[-40, 125]" in refused[0].message


def test_key_maps_of_several_modules_merge_first_wins() -> None:
    assert merge_key_maps([{"a": "x", "b": "y"}, {"a": "z", "c": "w"}]) == {"a": "x", "b": "y", "c": "w"}


def test_the_bucket_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3.0, notice_window=60.0)
    assert [limiter.allow("d", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("d", 0.5) is True and limiter.allow("d", 0.5) is False  # 0.5 s refills one token
    assert limiter.allow("other", 0.5) is True  # per device


def test_a_limited_device_is_told_once_per_window() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0, notice_window=10.0)
    limiter.allow("d", 0.0)
    assert limiter.allow("d", 0.0) is False
    assert [limiter.notify("d", t) for t in (0.0, 1.0, 9.9, 10.0, 12.0)] == [True, False, False, True, False]


def test_idle_buckets_are_forgotten() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0, notice_window=1.0, max_idle=5.0)
    limiter.allow("a", 0.0)
    limiter.allow("b", 100.0)
    assert len(limiter) == 1
