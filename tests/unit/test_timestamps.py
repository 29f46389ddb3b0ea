from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from muster.runtime.timestamps import timestamp_of

CASES = [
    datetime(2026, 11, 23, 14, 12, 19, 487718, tzinfo=UTC),
    datetime(2026, 11, 23, 14, 12, 19, 487718),  # naive: UTC
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),  # before the epoch: seconds floor, nanos positive
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("value", CASES, ids=str)
def test_timestamp_of_matches_protobufs_own_conversion(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp_of(value) == expected
