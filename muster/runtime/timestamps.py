"""datetime -> google.protobuf.Timestamp without `Timestamp.FromDatetime`.

`FromDatetime` is pure Python around `calendar.timegm` (~12 µs); event envelopes and payloads need
several per event, which made timestamps a visible share of bulk import. Same result: a naive
datetime is taken as UTC, an aware one is converted to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seconds_nanos(value: datetime) -> tuple[int, int]:
    """Whole seconds since the epoch (floored) and the nanoseconds past them."""
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1_000


def timestamp_of(value: datetime) -> Timestamp:
    seconds, nanos = seconds_nanos(value)
    return Timestamp(seconds=seconds, nanos=nanos)
