"""Parsing device telemetry payloads per the device contract, without I/O.

A payload is one object `{"ts": ..., "metrics": {...}}` or an array of them. Every value gets an
`position`: its place among all the values of the message, counted over rejected ones too, so the
same message always yields the same (stream sequence, position) pairs -- that pair is what makes a
redelivered message land on the rows it already wrote.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

Value = float | bool | str
MAX_STRING_VALUE = 1024
METRIC_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


class Reason:
    """Stable codes for refused input: the errors topic's `code` and the metrics' `reason` label."""

    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    NOT_JSON = "NOT_JSON"
    NOT_OBJECT = "NOT_OBJECT"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TIMESTAMP_OUT_OF_RANGE = "TIMESTAMP_OUT_OF_RANGE"
    INVALID_METRICS = "INVALID_METRICS"
    INVALID_METRIC_KEY = "INVALID_METRIC_KEY"
    INVALID_VALUE = "INVALID_VALUE"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    RATE_LIMITED = "RATE_LIMITED"


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 64 * 1024
    max_batch_entries: int = 1000
    max_future: timedelta = timedelta(minutes=5)
    max_past: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Rejection:
    code: str
    message: str


class Point(NamedTuple):
    """One value (a tuple, not a dataclass: millions are made, and tuples are made fastest)."""

    position: int  # among all the values of the message, rejected ones included
    time: datetime
    metric: str
    value: Value


@dataclass
class Parsed:
    """What survived parsing, and why the rest did not."""

    points: list[Point] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def decode(data: bytes, limits: Limits) -> tuple[Any, Rejection | None]:
    """The JSON document, or why there is none (size is checked before parsing)."""
    if len(data) > limits.max_payload_bytes:
        return None, Rejection(Reason.PAYLOAD_TOO_LARGE,
                               f"payload is {len(data)} bytes; the limit is {limits.max_payload_bytes}")
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as exc:
        return None, Rejection(Reason.NOT_JSON, f"payload is not UTF-8 JSON: {exc}")


def entries(document: Any, limits: Limits, what: str) -> tuple[list[Any], Rejection | None]:
    """The entries of a single-object or batch payload."""
    if isinstance(document, dict):
        return [document], None
    if isinstance(document, list):
        if len(document) > limits.max_batch_entries:
            return [], Rejection(Reason.BATCH_TOO_LARGE, f"batch has {len(document)} entries; "
                                                          f"the limit is {limits.max_batch_entries}")
        return document, None
    return [], Rejection(Reason.NOT_OBJECT, f"payload must be a {what} object or an array of them")


def parse_time(raw: Any, received: datetime, limits: Limits,
               now: datetime | None = None) -> tuple[datetime | None, Rejection | None]:
    """`ts` as epoch milliseconds or RFC 3339 with an offset; missing means the receive time. Too far
    ahead is judged from the receive time; too old from the later of it and `now` (processing time),
    so a message that waited in a backlog cannot carry a time older than the partitions kept."""
    if raw is None:
        return received, None
    when: datetime
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if not math.isfinite(raw):
            return None, Rejection(Reason.INVALID_TIMESTAMP, "ts must be a finite number of epoch milliseconds")
        try:
            when = datetime.fromtimestamp(raw / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None, Rejection(Reason.TIMESTAMP_OUT_OF_RANGE, f"ts {raw!r} is not a plausible time")
    elif isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            return None, Rejection(Reason.INVALID_TIMESTAMP,
                                   f"ts {raw[:64]!r} is neither epoch milliseconds nor RFC 3339")
        if when.tzinfo is None:
            return None, Rejection(Reason.INVALID_TIMESTAMP,
                                   f"ts {raw[:64]!r} has no UTC offset; add 'Z' or '+hh:mm'")
        when = when.astimezone(UTC)
    else:
        return None, Rejection(Reason.INVALID_TIMESTAMP, "ts must be epoch milliseconds or an RFC 3339 string")
    if when > received + limits.max_future:
        return None, Rejection(Reason.TIMESTAMP_OUT_OF_RANGE,
                               f"ts {when.isoformat()} is more than {limits.max_future} ahead of the platform clock")
    if when < max(received, now or received) - limits.max_past:
        return None, Rejection(Reason.TIMESTAMP_OUT_OF_RANGE,
                               f"ts {when.isoformat()} is older than {limits.max_past.days} days")
    return when, None


_known_keys: set[str] = set()  # keys that passed METRIC_KEY: a device sends the same few keys every time
_KNOWN_KEYS_MAX = 100_000


def check_value(key: str, raw: Any) -> tuple[Value | None, Rejection | None]:
    if key in _known_keys:
        pass
    elif METRIC_KEY.match(key):
        if len(_known_keys) >= _KNOWN_KEYS_MAX:
            _known_keys.clear()
        _known_keys.add(key)
    else:
        return None, Rejection(Reason.INVALID_METRIC_KEY, f"metric key {key[:64]!r} must be 1-128 of "
                                                          "[A-Za-z0-9_.:-], not starting with a symbol")
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, int | float):
        value = float(raw)
        if not math.isfinite(value):
            return None, Rejection(Reason.INVALID_VALUE, f"metric {key!r}: number out of range")
        return value, None
    if isinstance(raw, str):
        if len(raw) > MAX_STRING_VALUE:
            return None, Rejection(Reason.INVALID_VALUE,
                                   f"metric {key!r}: strings are limited to {MAX_STRING_VALUE} characters")
        return raw, None
    return None, Rejection(Reason.INVALID_VALUE,
                           f"metric {key!r}: value must be a number, bool or string, not {_json_type(raw)}")


def _json_type(raw: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(raw), type(raw).__name__)


def parse_telemetry(data: bytes, received: datetime, limits: Limits, now: datetime | None = None) -> Parsed:
    """Every valid value of the message, and a rejection for each invalid part."""
    parsed = Parsed()
    document, rejection = decode(data, limits)
    if rejection is None:
        items, rejection = entries(document, limits, "telemetry")
    if rejection is not None:
        parsed.rejections.append(rejection)
        return parsed
    index = 0
    for position, entry in enumerate(items):
        where = f"entry {position}: " if isinstance(document, list) else ""
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(metrics, dict):
            parsed.rejections.append(Rejection(
                Reason.NOT_OBJECT if not isinstance(entry, dict) else Reason.INVALID_METRICS,
                f'{where}expected {{"ts": ..., "metrics": {{"name": value}}}}'))
            index += len(metrics) if isinstance(metrics, dict) else 0
            continue
        when, rejection = parse_time(entry.get("ts"), received, limits, now)
        if when is None:
            assert rejection is not None
            parsed.rejections.append(Rejection(rejection.code, where + rejection.message))
            index += len(metrics)
            continue
        for key, raw in metrics.items():
            value, bad = check_value(key, raw)
            if value is not None:
                parsed.points.append(Point(index, when, key, value))
            elif bad is not None:
                parsed.rejections.append(Rejection(bad.code, where + bad.message))
            index += 1
    return parsed
