"""Telemetry queries as plain values, and their validation (no I/O, no protobuf)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from muster.runtime.errors import FieldViolation, InvalidArgument

DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9]{1,64}$")
DEFAULT_RAW_PAGE = 500
MAX_RAW_PAGE = 10_000
MAX_BUCKETS_PER_METRIC = 10_000
MAX_METRICS = 100
DEFAULT_RANGE = timedelta(hours=1)

Value = float | bool | str


class Aggregation(enum.IntEnum):
    """Mirrors muster.ingest.v1.Aggregation."""

    AVG = 1
    MIN = 2
    MAX = 3
    SUM = 4
    COUNT = 5
    FIRST = 6
    LAST = 7


@dataclass(frozen=True)
class TelemetryQuery:
    device_id: str
    metrics: tuple[str, ...]
    start: datetime
    end: datetime
    page_size: int
    page_token: str
    bucket: timedelta | None
    aggregations: frozenset[Aggregation]
    requested: tuple[datetime | None, datetime | None] = (None, None)  # (start, end) as sent


@dataclass(frozen=True)
class PointValue:
    metric: str
    time: datetime
    value: Value | None


@dataclass(frozen=True)
class Bucket:
    metric: str
    start: datetime
    count: int
    avg: float | None
    min: float | None
    max: float | None
    sum: float | None
    first: Value | None
    last: Value | None


def build_query(*, device_id: str, metrics: list[str], start: datetime | None, end: datetime | None,
                page_size: int, page_token: str, bucket: timedelta | None, aggregations: list[int],
                now: datetime) -> TelemetryQuery:
    """Defaults filled in, every problem reported at once as field violations."""
    problems: list[FieldViolation] = []
    requested = (start, end)
    end = end or now
    start = start or end - DEFAULT_RANGE
    if start >= end:
        problems.append(FieldViolation("start_time", "must be before end_time"))
    if len(metrics) > MAX_METRICS:
        problems.append(FieldViolation("metrics", f"at most {MAX_METRICS} metrics per query"))
    if any(not m or len(m) > 128 for m in metrics):
        problems.append(FieldViolation("metrics", "metric keys are 1-128 characters"))
    if page_size < 0:
        problems.append(FieldViolation("page_size", "must not be negative"))
    chosen: set[Aggregation] = set()
    for value in aggregations:
        try:
            chosen.add(Aggregation(value))
        except ValueError:
            problems.append(FieldViolation("aggregations", f"unknown aggregation {value}"))
    if bucket is not None:
        if bucket < timedelta(seconds=1):
            problems.append(FieldViolation("bucket_width", "must be at least 1s"))
        elif start < end and (end - start) / bucket > MAX_BUCKETS_PER_METRIC:
            problems.append(FieldViolation(
                "bucket_width", f"makes more than {MAX_BUCKETS_PER_METRIC} buckets over the time range; "
                                "widen the buckets or narrow the range"))
        if page_token:
            problems.append(FieldViolation("page_token", "bucket queries are not paginated"))
    elif aggregations:
        problems.append(FieldViolation("aggregations", "only apply with bucket_width"))
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems)
    size = DEFAULT_RAW_PAGE if page_size == 0 else min(page_size, MAX_RAW_PAGE)
    return TelemetryQuery(device_id, tuple(dict.fromkeys(metrics)), start, end, size, page_token, bucket,
                          frozenset(chosen or set(Aggregation)), requested)


def value_of(num: float | None, flag: bool | None, text: str | None) -> Value | None:
    """The one non-null column of a stored value."""
    if num is not None:
        return num
    if flag is not None:
        return flag
    return text
