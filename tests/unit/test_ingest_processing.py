"""A batch of captured messages -> rows, device errors and redeliveries (pure, with fakes)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fakes.ingest import FakeMonotonic, FakeProfiles

from services.ingest.normalise import DeviceProfile, MetricSpec, MetricType
from services.ingest.payloads import Limits, Reason
from services.ingest.processing import Inbound, TelemetryProcessor
from services.ingest.profiles import ProfileCache
from services.ingest.ratelimit import RateLimiter

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROFILES = {"dev1": DeviceProfile("dev1", "acme", {"temp": MetricSpec(MetricType.NUMBER, 0.0, 100.0)},
                                  {"t": "temp"})}


def message(data: object, *, device: str = "dev1", seq: int = 1, deliveries: int = 1) -> Inbound:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return Inbound(device, f"muster/v1/devices/{device}/telemetry", raw, seq, RECEIVED, deliveries)


def processor(rate: float = 100.0, burst: float = 100.0) -> TelemetryProcessor:
    return TelemetryProcessor(Limits(), RateLimiter(rate, burst, 60.0), unknown_device_retries=3,
                              monotonic=FakeMonotonic())


def test_valid_values_become_rows_keyed_by_stream_sequence_and_index() -> None:
    outcome = processor().process([message({"metrics": {"t": 20, "on": True}}, seq=7)], PROFILES)
    assert outcome.rows == [("acme", "dev1", "temp", RECEIVED, 20.0, None, None, 7, 0),
                            ("acme", "dev1", "on", RECEIVED, None, True, None, 7, 1)]
    assert outcome.errors == [] and outcome.retry == []


def test_a_bad_value_is_refused_on_the_errors_topic_and_the_rest_is_kept() -> None:
    outcome = processor().process([message({"metrics": {"t": 500, "ok": 1, "n": None}})], PROFILES)
    assert [r[2] for r in outcome.rows] == ["ok"]
    (error,) = outcome.errors
    assert (error.device_id, error.topic, error.code) == ("dev1", "muster/v1/devices/dev1/telemetry",
                                                          Reason.INVALID_VALUE)
    assert "(and 1 more problem(s)" in error.message
    assert outcome.rejected == {Reason.INVALID_VALUE: 1, Reason.OUT_OF_RANGE: 1}


def test_unknown_devices_are_redelivered_a_few_times_then_refused() -> None:
    batch = [message({"metrics": {"x": 1}}, device="ghost", deliveries=1),
             message({"metrics": {"x": 1}}, device="ghost", deliveries=3), message({"metrics": {"x": 1}})]
    outcome = processor().process(batch, PROFILES)
    assert outcome.retry == [0]
    assert [(e.device_id, e.code) for e in outcome.errors] == [("ghost", Reason.UNKNOWN_DEVICE)]
    assert len(outcome.rows) == 1


def test_a_device_only_the_edge_knows_is_retried_then_stored_as_sent_rather_than_lost() -> None:
    known_to_edge = {**PROFILES, "fresh": DeviceProfile("fresh", "acme", provisional=True)}
    early = processor().process([message({"metrics": {"t": 500}}, device="fresh", deliveries=1)], known_to_edge)
    assert early.retry == [0] and early.rows == [] and early.errors == []
    late = processor().process([message({"metrics": {"t": 500}}, device="fresh", seq=4, deliveries=3)],
                               known_to_edge)
    # No template or key map yet: the raw key and value are kept as sent, under the device's tenant.
    assert late.rows == [("acme", "fresh", "t", RECEIVED, 500.0, None, None, 4, 0)]
    assert late.errors == [] and late.provisional == 1


def test_excess_messages_are_dropped_counted_and_the_device_told_once() -> None:
    outcome = processor(rate=0.001, burst=2).process([message({"metrics": {"x": i}}, seq=i) for i in range(5)],
                                                     PROFILES)
    assert [r[7] for r in outcome.rows] == [0, 1]
    assert outcome.rate_limited == 3 and outcome.rejected[Reason.RATE_LIMITED] == 3
    assert [e.code for e in outcome.errors] == [Reason.RATE_LIMITED]


def test_malformed_messages_do_not_stop_the_batch() -> None:
    outcome = processor().process([message(b"\x00garbage"), message({"metrics": {"x": 1}}, seq=2)], PROFILES)
    assert [e.code for e in outcome.errors] == [Reason.NOT_JSON]
    assert [r[7] for r in outcome.rows] == [2]


async def test_the_profile_cache_loads_only_stale_devices_and_rechecks_unknown_ones_soon() -> None:
    source, clock = FakeProfiles(dict(PROFILES)), FakeMonotonic()
    cache = ProfileCache(source, ttl=10.0, unknown_ttl=1.0, monotonic=clock)
    assert set(await cache.get_many(["dev1", "ghost"])) == {"dev1"}
    clock.advance(2.0)
    source.profiles["ghost"] = DeviceProfile("ghost", "acme")
    assert set(await cache.get_many(["dev1", "ghost"])) == {"dev1", "ghost"}
    assert source.loads == [{"dev1", "ghost"}, {"ghost"}]
    clock.advance(11.0)
    await cache.get_many(["dev1"])
    assert source.loads[-1] == {"dev1"}


async def test_a_provisional_profile_is_rechecked_as_soon_as_an_unknown_one() -> None:
    source, clock = FakeProfiles({"fresh": DeviceProfile("fresh", "acme", provisional=True)}), FakeMonotonic()
    cache = ProfileCache(source, ttl=10.0, unknown_ttl=1.0, monotonic=clock)
    assert (await cache.get_many(["fresh"]))["fresh"].provisional
    clock.advance(2.0)
    source.profiles["fresh"] = DeviceProfile("fresh", "acme", {"temp": MetricSpec(MetricType.NUMBER)})
    assert not (await cache.get_many(["fresh"]))["fresh"].provisional
