"""QueryTelemetry validation: defaults, and every problem named as a field violation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from muster.runtime.errors import InvalidArgument
from services.ingest.config import IngestSettings
from services.ingest.queries import DEFAULT_RAW_PAGE, MAX_RAW_PAGE, Aggregation, build_query

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def query(**overrides: object) -> object:
    args: dict[str, object] = {"device_id": "dev1", "metrics": [], "start": None, "end": None, "page_size": 0,
                               "page_token": "", "bucket": None, "aggregations": [], "now": NOW}
    return build_query(**{**args, **overrides})  # type: ignore[arg-type]


def test_defaults_are_the_last_hour_all_metrics_and_every_aggregation() -> None:
    q = query(bucket=timedelta(minutes=1))
    assert (q.start, q.end, q.metrics) == (NOW - timedelta(hours=1), NOW, ())  # type: ignore[attr-defined]
    assert q.aggregations == frozenset(Aggregation)  # type: ignore[attr-defined]
    assert query().page_size == DEFAULT_RAW_PAGE  # type: ignore[attr-defined]
    assert query(page_size=10**6).page_size == MAX_RAW_PAGE  # type: ignore[attr-defined]


def test_every_problem_is_reported_with_its_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        query(start=NOW, end=NOW - timedelta(seconds=1), page_size=-1, aggregations=[99])
    assert {v.field for v in caught.value.violations} == {"start_time", "page_size", "aggregations"}


def test_buckets_must_be_at_least_a_second_and_not_too_many() -> None:
    for bucket, start in ((timedelta(milliseconds=10), None), (timedelta(seconds=1), NOW - timedelta(days=1))):
        with pytest.raises(InvalidArgument) as caught:
            query(bucket=bucket, start=start)
        assert [v.field for v in caught.value.violations] == ["bucket_width"]


def test_aggregations_and_page_tokens_do_not_mix_with_the_wrong_mode() -> None:
    with pytest.raises(InvalidArgument) as caught:
        query(aggregations=[1])
    assert [v.field for v in caught.value.violations] == ["aggregations"]
    with pytest.raises(InvalidArgument) as caught:
        query(bucket=timedelta(minutes=1), page_token="abc")
    assert [v.field for v in caught.value.violations] == ["page_token"]


def test_the_accepted_age_never_exceeds_the_retention() -> None:
    settings = IngestSettings(service_name="ingest", database_url=SecretStr("postgresql+asyncpg://x@y/z"),
                              token_secret_file=Path("/nonexistent"), ingest_max_past_days=7,
                              ingest_log_retention_days=3)
    assert settings.max_past == timedelta(days=3)
