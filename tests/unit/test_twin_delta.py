"""Structured delta and convergence: table-driven, incl. nested objects, arrays and type changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.twin.delta import MISSING, Convergence, Kind, Rejection, compare, delta
from services.twin.documents import Leaf

NOW = datetime(2026, 11, 23, tzinfo=UTC)

CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[str, Kind, Any, Any]]]] = [
    ("empty", {}, {}, []),
    ("added", {"a": 1}, {}, [("/a", Kind.ADDED, 1, MISSING)]),
    ("removed", {}, {"a": 1}, [("/a", Kind.REMOVED, MISSING, 1)]),
    ("changed", {"a": 1}, {"a": 2}, [("/a", Kind.CHANGED, 1, 2)]),
    ("unchanged", {"a": "x"}, {"a": "x"}, [("/a", Kind.UNCHANGED, "x", "x")]),
    ("int equals float", {"a": 1}, {"a": 1.0}, [("/a", Kind.UNCHANGED, 1, 1.0)]),
    ("bool is not 1", {"a": True}, {"a": 1}, [("/a", Kind.CHANGED, True, 1)]),
    ("nested path by path", {"n": {"x": 1, "y": 2}}, {"n": {"x": 1, "z": 3}},
     [("/n/x", Kind.UNCHANGED, 1, 1), ("/n/y", Kind.ADDED, 2, MISSING), ("/n/z", Kind.REMOVED, MISSING, 3)]),
    ("deeply nested", {"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}, [("/a/b/c", Kind.CHANGED, 1, 2)]),
    ("arrays are values", {"l": [1, 2]}, {"l": [2, 1]}, [("/l", Kind.CHANGED, [1, 2], [2, 1])]),
    ("equal arrays", {"l": [{"a": 1}]}, {"l": [{"a": 1}]}, [("/l", Kind.UNCHANGED, [{"a": 1}], [{"a": 1}])]),
    ("object vs value", {"a": {"b": 1}}, {"a": 5}, [("/a", Kind.CHANGED, {"b": 1}, 5)]),
    ("empty objects on both sides", {"a": {}}, {"a": {}}, [("/a", Kind.UNCHANGED, {}, {})]),
    ("object only desired, leaf by leaf", {"a": {"b": 1, "c": {"d": 2}}}, {},
     [("/a/b", Kind.ADDED, 1, MISSING), ("/a/c/d", Kind.ADDED, 2, MISSING)]),
    ("object only reported, leaf by leaf", {}, {"a": {"b": 1}}, [("/a/b", Kind.REMOVED, MISSING, 1)]),
    ("empty object desired only", {"a": {}}, {}, [("/a", Kind.ADDED, {}, MISSING)]),
    ("keys with slashes", {"a/b": 1}, {"a/b": 1}, [("/a~1b", Kind.UNCHANGED, 1, 1)]),
]


@pytest.mark.parametrize(("case", "desired", "reported", "expected"), CASES, ids=[c[0] for c in CASES])
def test_compare(case: str, desired: dict[str, Any], reported: dict[str, Any],
                 expected: list[tuple[str, Kind, Any, Any]]) -> None:
    assert [(e.path, e.kind, e.desired, e.reported) for e in compare(desired, reported)] == expected


def _meta(**paths: int) -> dict[str, Leaf]:
    return {f"/{k}": Leaf(NOW, v) for k, v in paths.items()}


def test_convergence_per_desired_key_and_in_sync() -> None:
    d = delta({"a": 1, "b": 2}, {"a": 1, "b": 3, "extra": True}, desired_metadata=_meta(a=1, b=2), rejections={})
    assert [(k.path, k.status) for k in d.convergence] == [("/a", Convergence.APPLIED), ("/b", Convergence.PENDING)]
    assert not d.in_sync


def test_reported_only_keys_do_not_break_sync() -> None:
    d = delta({"a": 1}, {"a": 1, "firmware": "1.2"}, desired_metadata=_meta(a=1), rejections={})
    assert d.in_sync


def test_a_rejection_holds_until_desired_is_written_again() -> None:
    rejection = Rejection(code="OUT_OF_RANGE", message="max 3000", version=4, seq=100)
    current = delta({"fan": {"speed": 5000}}, {}, desired_metadata={"/fan/speed": Leaf(NOW, 4)},
                    rejections={"/fan": rejection})
    assert [(k.path, k.status, k.code) for k in current.convergence] == [
        ("/fan/speed", Convergence.REJECTED, "OUT_OF_RANGE")]
    rewritten = delta({"fan": {"speed": 2000}}, {}, desired_metadata={"/fan/speed": Leaf(NOW, 5)},
                      rejections={"/fan": rejection})
    assert rewritten.convergence[0].status is Convergence.PENDING


def test_an_applied_value_wins_over_an_old_rejection() -> None:
    rejection = Rejection(code="X", message="", version=9, seq=1)
    d = delta({"a": 1}, {"a": 1}, desired_metadata=_meta(a=1), rejections={"/a": rejection})
    assert d.convergence[0].status is Convergence.APPLIED and d.in_sync


def test_pending_patch_is_what_the_device_still_has_to_apply() -> None:
    d = delta({"a": 1, "n": {"x": 1, "y": [1]}, "same": 2}, {"a": 0, "n": {"x": 1}, "same": 2, "r": 1},
              desired_metadata={}, rejections={})
    assert d.pending_patch() == {"a": 1, "n": {"y": [1]}}
