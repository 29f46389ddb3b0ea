"""ListDeviceLogs as a plain value, and its validation (no I/O, no protobuf)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from muster.runtime.errors import FieldViolation, InvalidArgument
from muster.runtime.pagination import page_size
from services.ingest.logs import MAX_MESSAGE, LogLevel

DEFAULT_LOG_RANGE = timedelta(hours=24)


@dataclass(frozen=True)
class LogQuery:
    device_id: str
    min_level: LogLevel | None
    start: datetime
    end: datetime
    text: str
    page_size: int
    page_token: str
    requested: tuple[datetime | None, datetime | None] = (None, None)  # (start, end) as sent


@dataclass(frozen=True)
class StoredLog:
    time: datetime
    level: LogLevel
    message: str
    fields: Mapping[str, Any]


def build_log_query(*, device_id: str, min_level: int, start: datetime | None, end: datetime | None, text: str,
                    size: int, page_token: str, now: datetime) -> LogQuery:
    problems: list[FieldViolation] = []
    requested = (start, end)
    end = end or now
    start = start or end - DEFAULT_LOG_RANGE
    if start >= end:
        problems.append(FieldViolation("start_time", "must be before end_time"))
    level: LogLevel | None = None
    if min_level:
        try:
            level = LogLevel(min_level)
        except ValueError:
            problems.append(FieldViolation("min_level", f"unknown log level {min_level}"))
    if len(text) > MAX_MESSAGE:
        problems.append(FieldViolation("text", f"at most {MAX_MESSAGE} characters"))
    try:
        limit = page_size(size)
    except InvalidArgument as exc:
        problems += exc.violations
        limit = 0
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems)
    return LogQuery(device_id, level, start, end, text, limit, page_token, requested)


def like_pattern(text: str) -> str:
    """`text` as a literal ILIKE substring pattern (%, _ and the escape character escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
