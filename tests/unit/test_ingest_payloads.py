"""Telemetry payload parsing per the device contract: shapes, timestamps, values, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.payloads import Limits, Reason, parse_telemetry

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = Limits()


def parse(document: Any, limits: Limits = LIMITS) -> Any:
    return parse_telemetry(orjson.dumps(document), RECEIVED, limits)


def test_a_single_object_yields_one_point_per_metric_with_its_epoch_ms_time() -> None:
    ts = int((RECEIVED - timedelta(seconds=5)).timestamp() * 1000)
    parsed = parse({"ts": ts, "metrics": {"temp": 21.5, "on": True, "mode": "eco"}})
    assert parsed.rejections == []
    assert [(p.position, p.metric, p.value) for p in parsed.points] == [(0, "temp", 21.5), (1, "on", True),
                                                                     (2, "mode", "eco")]
    assert {p.time for p in parsed.points} == {RECEIVED - timedelta(seconds=5)}


def test_integers_become_floats_but_bools_stay_bools() -> None:
    parsed = parse({"metrics": {"n": 3, "b": False}})
    assert [type(p.value) for p in parsed.points] == [float, bool]


def test_missing_ts_means_the_receive_time() -> None:
    assert parse({"metrics": {"x": 1}}).points[0].time == RECEIVED


def test_rfc3339_with_offset_is_accepted_and_converted_to_utc() -> None:
    parsed = parse({"ts": "2026-11-23T13:59:00+02:00", "metrics": {"x": 1}})
    assert parsed.points[0].time == datetime(2026, 11, 23, 11, 59, tzinfo=UTC)


def test_rfc3339_without_offset_is_refused() -> None:
    parsed = parse({"ts": "2026-11-23T11:59:00", "metrics": {"x": 1}})
    assert parsed.points == [] and parsed.rejections[0].code == Reason.INVALID_TIMESTAMP


def test_timestamps_too_far_ahead_or_behind_are_refused() -> None:
    ahead = int((RECEIVED + timedelta(minutes=10)).timestamp() * 1000)
    behind = (RECEIVED - timedelta(days=8)).isoformat()
    for ts in (ahead, behind):
        parsed = parse({"ts": ts, "metrics": {"x": 1}})
        assert parsed.points == []
        assert [r.code for r in parsed.rejections] == [Reason.TIMESTAMP_OUT_OF_RANGE]


def test_a_batch_keeps_the_good_entries_and_reports_the_bad_ones() -> None:
    parsed = parse([{"metrics": {"a": 1}}, {"ts": "yesterday", "metrics": {"b": 2}}, "nope",
                    {"metrics": {"c": None, "d": 4}}])
    assert [(p.position, p.metric) for p in parsed.points] == [(0, "a"), (3, "d")]
    assert [r.code for r in parsed.rejections] == [Reason.INVALID_TIMESTAMP, Reason.NOT_OBJECT, Reason.INVALID_VALUE]
    assert parsed.rejections[0].message.startswith("entry 1: ")


def test_values_that_are_not_number_bool_or_string_are_refused_one_by_one() -> None:
    parsed = parse({"metrics": {"o": {"x": 1}, "l": [1], "n": None, "ok": 1}})
    assert [p.metric for p in parsed.points] == ["ok"]
    assert [r.code for r in parsed.rejections] == [Reason.INVALID_VALUE] * 3


def test_bad_metric_keys_are_refused() -> None:
    parsed = parse({"metrics": {"a b": 1, "-x": 2, "ok.key:1": 3}})
    assert [p.metric for p in parsed.points] == ["ok.key:1"]
    assert {r.code for r in parsed.rejections} == {Reason.INVALID_METRIC_KEY}


def test_whole_message_problems() -> None:
    assert parse_telemetry(b"{nope", RECEIVED, LIMITS).rejections[0].code == Reason.NOT_JSON
    assert parse_telemetry(b"\xff\xfe", RECEIVED, LIMITS).rejections[0].code == Reason.NOT_JSON
    assert parse(42).rejections[0].code == Reason.NOT_OBJECT
    assert parse({"temp": 1}).rejections[0].code == Reason.INVALID_METRICS
    small = Limits(max_payload_bytes=1024, max_batch_entries=2)
    assert parse({"metrics": {"s": "x" * 1100}}, small).rejections[0].code == Reason.PAYLOAD_TOO_LARGE
    assert parse([{"metrics": {}}] * 3, small).rejections[0].code == Reason.BATCH_TOO_LARGE


_values = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans(),
                    st.text(max_size=20), st.none(), st.integers(-10**6, 10**6))
_keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_entry = st.fixed_dictionaries({"metrics": st.dictionaries(_keys, _values, max_size=6)},
                               optional={"ts": st.integers(int((RECEIVED - timedelta(days=1)).timestamp() * 1000),
                                                           int(RECEIVED.timestamp() * 1000))})


@given(st.one_of(_entry, st.lists(_entry, max_size=8)))
def test_every_value_is_either_a_point_or_refused_and_indexes_are_unique_and_stable(document: Any) -> None:
    entries = document if isinstance(document, list) else [document]
    total = sum(len(e["metrics"]) for e in entries)
    first, second = parse(document), parse(document)
    assert first == second  # a redelivery yields the same (index, point) pairs
    indexes = [p.position for p in first.points]
    assert len(set(indexes)) == len(indexes) and all(0 <= i < total for i in indexes)
    assert len(first.points) + len(first.rejections) == total


_CODES = {v for k, v in vars(Reason).items() if k.isupper()}


@given(st.one_of(st.binary(max_size=300), st.builds(orjson.dumps, st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10))))
def test_arbitrary_input_never_raises_and_is_refused_with_a_known_code(data: bytes) -> None:
    parsed = parse_telemetry(data, RECEIVED, LIMITS)
    assert {r.code for r in parsed.rejections} <= _CODES
    assert all(r.message for r in parsed.rejections)


def test_a_message_that_waited_in_a_backlog_is_judged_old_by_the_processing_time() -> None:
    ts = int((RECEIVED - timedelta(days=6)).timestamp() * 1000)
    document = orjson.dumps({"ts": ts, "metrics": {"x": 1}})
    assert parse_telemetry(document, RECEIVED, LIMITS).points  # fresh: 6 days old is fine
    late = parse_telemetry(document, RECEIVED, LIMITS, now=RECEIVED + timedelta(days=2))
    assert late.points == [] and late.rejections[0].code == Reason.TIMESTAMP_OUT_OF_RANGE
    missing = parse_telemetry(orjson.dumps({"metrics": {"x": 1}}), RECEIVED, LIMITS, now=RECEIVED + timedelta(hours=1))
    assert missing.points[0].time == RECEIVED  # no ts: still the capture time, on every delivery
