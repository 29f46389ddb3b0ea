"""Device log payloads, their rows, and ListDeviceLogs validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fakes.ingest import FakeMonotonic

from muster.runtime.errors import InvalidArgument
from services.ingest.log_queries import build_log_query, like_pattern
from services.ingest.logs import LogLevel, LogProcessor, parse_logs
from services.ingest.normalise import DeviceProfile
from services.ingest.payloads import Limits, Reason
from services.ingest.processing import Inbound
from services.ingest.ratelimit import RateLimiter

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_an_entry_with_level_message_fields_and_ts() -> None:
    entries, rejections = parse_logs(orjson.dumps({"ts": "2026-11-23T11:59:00Z", "level": "warning",
                                                   "message": "pump hot", "fields": {"temp": 91}}), RECEIVED, Limits())
    assert rejections == []
    (entry,) = entries
    assert (entry.time, entry.level, entry.message, dict(entry.fields)) == (
        RECEIVED - timedelta(minutes=1), LogLevel.WARNING, "pump hot", {"temp": 91})


def test_a_batch_keeps_good_entries_and_names_the_bad_ones() -> None:
    entries, rejections = parse_logs(orjson.dumps([
        {"message": "boot"}, {"level": "fatal", "message": "x"}, {"level": "info"}, {"message": "y", "fields": [1]},
        {"message": "z", "ts": "yesterday"}, {"level": "ERROR", "message": "disk"}]), RECEIVED, Limits())
    assert [(e.index, e.level, e.message) for e in entries] == [(0, LogLevel.INFO, "boot"), (5, LogLevel.ERROR, "disk")]
    assert [r.code for r in rejections] == [Reason.INVALID_VALUE] * 3 + [Reason.INVALID_TIMESTAMP]
    assert rejections[0].message.startswith("entry 1: level")


def test_log_rows_carry_tenant_level_and_fields_as_json() -> None:
    processor = LogProcessor(Limits(), RateLimiter(10, 10, 60), unknown_device_retries=3, monotonic=FakeMonotonic())
    message = Inbound("dev1", "muster/v1/devices/dev1/logs", orjson.dumps({"message": "hi", "fields": {"a": 1}}),
                      42, RECEIVED)
    outcome = processor.process([message], {"dev1": DeviceProfile("dev1", "acme")})
    assert outcome.rows == [("acme", "dev1", RECEIVED, int(LogLevel.INFO), "hi", '{"a":1}', 42, 0)]


def test_text_search_is_literal() -> None:
    assert like_pattern("50%_done\\") == "%50\\%\\_done\\\\%"


def test_log_query_defaults_and_violations() -> None:
    query = build_log_query(device_id="d", min_level=0, start=None, end=None, text="", size=0, page_token="",
                            now=RECEIVED)
    assert (query.start, query.end, query.min_level, query.page_size) == (RECEIVED - timedelta(hours=24), RECEIVED,
                                                                           None, 50)
    with pytest.raises(InvalidArgument) as caught:
        build_log_query(device_id="d", min_level=9, start=RECEIVED, end=RECEIVED, text="", size=-1, page_token="",
                        now=RECEIVED)
    assert {v.field for v in caught.value.violations} == {"min_level", "start_time", "page_size"}
