"""Reducing a batch of device rows as applying them one by one would (muster.runtime.device_projection)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from muster.runtime.device_projection import newest_alive

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _row(device: str, seconds: int, state: int = 1) -> tuple[datetime, dict[str, object]]:
    return _at(seconds), {"device_id": device, "update_time": _at(seconds), "state": state}


def test_rows_from_before_their_devices_deletion_are_dropped() -> None:
    kept = newest_alive([_row("gone", 4), _row("back", 6), _row("other", 1)], {"gone": _at(5), "back": _at(5)})
    assert sorted(row["device_id"] for row in kept) == ["back", "other"]


def test_of_several_rows_of_a_device_the_newest_wins_whatever_their_order() -> None:
    rows = [_row("d", 3, state=3), _row("d", 1, state=1), _row("d", 2, state=2)]
    assert newest_alive(rows, {}) == [{"device_id": "d", "update_time": _at(3), "state": 3}]
    assert newest_alive(rows[::-1], {}) == [{"device_id": "d", "update_time": _at(3), "state": 3}]


def test_the_time_column_is_chosen_by_the_caller() -> None:
    rows = [(_at(1), {"device_id": "d", "create_time": _at(1)}), (_at(2), {"device_id": "d", "create_time": _at(2)})]
    assert newest_alive(rows, {}, time_column="create_time") == [{"device_id": "d", "create_time": _at(2)}]
