"""JSON merge patch (RFC 7386) with per-leaf sequences, limits and diffs: table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.twin.documents import (
    Leaf,
    LimitExceeded,
    Limits,
    apply_patch,
    check_limits,
    depth,
    diff_patch,
    live_metadata,
    normalise,
    parse_pointer,
    pointer,
    prune_tombstones,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# RFC 7386, Appendix A, plus nested objects, arrays and null.
RFC_7386: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({"a": 5}, {"a": {"b": None}}, {"a": {}}),
    ({"a": 5}, {"a": {}}, {"a": {}}),
    ({"a": {"x": 1}}, {"a": {}}, {"a": {"x": 1}}),
    ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"c": 3}}}, {"a": {"b": {"c": 3, "d": 2}}}),
    ({"list": [1, 2, 3]}, {"list": [1, None]}, {"list": [1, None]}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7386)
def test_merge_patch_follows_rfc_7386(target: dict[str, Any], patch: dict[str, Any],
                                      expected: dict[str, Any]) -> None:
    assert apply_patch(target, {}, patch, seq=1, now=NOW).document == expected


def test_inputs_are_not_modified() -> None:
    target, patch = {"a": {"b": 1}}, {"a": {"b": 2, "c": [1]}}
    apply_patch(target, {}, patch, seq=1, now=NOW)
    assert target == {"a": {"b": 1}} and patch == {"a": {"b": 2, "c": [1]}}


def test_each_leaf_write_is_recorded_with_time_and_seq() -> None:
    patched = apply_patch({}, {}, {"a": {"b": 1, "c": None}, "d": []}, seq=7, now=NOW)
    assert patched.metadata == {"/a/b": Leaf(NOW, 7), "/a/c": Leaf(NOW, 7, deleted=True), "/d": Leaf(NOW, 7)}
    assert live_metadata(patched.document, patched.metadata).keys() == {"/a/b", "/d"}


# (first write, second write applied later with an OLDER sequence, expected document)
OUT_OF_ORDER: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("same leaf", {"t": 2}, {"t": 1}, {"t": 2}),
    ("deleted stays deleted", {"t": None}, {"t": 1}, {}),
    ("newer nested leaf vs older parent delete", {"a": {"b": 2}}, {"a": None}, {"a": {"b": 2}}),
    ("newer parent value vs older nested leaf", {"a": 5}, {"a": {"b": 1}}, {"a": 5}),
    ("deleted parent blocks older nested leaf", {"a": None}, {"a": {"c": 1}}, {}),
    ("unrelated leaves both apply", {"a": 1}, {"b": 1}, {"a": 1, "b": 1}),
    ("partly stale patch applies the rest", {"a": 2}, {"a": 1, "b": 1}, {"a": 2, "b": 1}),
]


@pytest.mark.parametrize(("case", "newer", "older", "expected"), OUT_OF_ORDER, ids=[c[0] for c in OUT_OF_ORDER])
def test_an_older_write_never_rolls_a_newer_one_back(case: str, newer: dict[str, Any], older: dict[str, Any],
                                                     expected: dict[str, Any]) -> None:
    first = apply_patch({"a": {"b": 0}}, {}, newer, seq=10, now=NOW) if case.startswith("newer nested") \
        else apply_patch({}, {}, newer, seq=10, now=NOW)
    second = apply_patch(first.document, first.metadata, older, seq=9, now=NOW)
    assert second.document == expected


def test_a_duplicate_changes_nothing_and_is_counted_stale() -> None:
    first = apply_patch({}, {}, {"a": 1, "b": {"c": 2}}, seq=5, now=NOW)
    again = apply_patch(first.document, first.metadata, {"a": 1, "b": {"c": 2}}, seq=5, now=NOW)
    assert again.document == first.document and not again.changed and again.stale == 2


def test_applied_is_the_effective_patch() -> None:
    first = apply_patch({}, {}, {"a": 1}, seq=5, now=NOW)
    second = apply_patch(first.document, first.metadata, {"a": 0, "b": None, "c": {"d": 1}}, seq=4, now=NOW)
    assert second.applied == {"b": None, "c": {"d": 1}}


def test_replacing_a_subtree_drops_its_leaves_metadata() -> None:
    first = apply_patch({}, {}, {"a": {"b": 1, "c": 2}}, seq=1, now=NOW)
    second = apply_patch(first.document, first.metadata, {"a": 3}, seq=2, now=NOW)
    assert second.metadata == {"/a": Leaf(NOW, 2)}


def test_old_tombstones_are_pruned() -> None:
    meta = {"/a": Leaf(NOW - timedelta(days=2), 1, deleted=True), "/b": Leaf(NOW - timedelta(days=2), 1),
            "/c": Leaf(NOW, 2, deleted=True)}
    assert prune_tombstones(meta, older_than=NOW - timedelta(days=1)).keys() == {"/b", "/c"}


@pytest.mark.parametrize(("path", "text"), [((), ""), (("a",), "/a"), (("a/b", "c~d"), "/a~1b/c~0d"), (("",), "/")])
def test_json_pointers_round_trip(path: tuple[str, ...], text: str) -> None:
    assert pointer(path) == text and parse_pointer(text) == path


@pytest.mark.parametrize(("current", "target"), [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}, "e": [1]}),
    ({"a": {"b": 1}}, {"a": 2}),
    ({"a": 2}, {"a": {"b": 1}}),
    ({"a": 1}, {"a": True}),
    ({"a": {"b": 1}}, {"a": {}}),
    ({}, {}),
])
def test_diff_patch_turns_current_into_target(current: dict[str, Any], target: dict[str, Any]) -> None:
    patch = diff_patch(current, target)
    assert apply_patch(current, {}, patch, seq=1, now=NOW).document == target


@pytest.mark.parametrize(("value", "levels"), [(1, 0), ({}, 1), ({"a": 1}, 1), ({"a": {"b": [1]}}, 3), ([[[]]], 3)])
def test_depth(value: Any, levels: int) -> None:
    assert depth(value) == levels


def test_limits_name_the_size_and_the_limit() -> None:
    with pytest.raises(LimitExceeded) as big:
        check_limits({"a": "x" * 100}, Limits(max_bytes=64, max_depth=8), "desired")
    assert big.value.code == "DOCUMENT_TOO_LARGE"
    assert "108 bytes" in big.value.message and "64 bytes" in big.value.message
    deep: dict[str, Any] = {"a": 1}
    for _ in range(8):
        deep = {"a": deep}
    with pytest.raises(LimitExceeded) as nested:
        check_limits(deep, Limits(), "desired")
    assert nested.value.code == "DOCUMENT_TOO_DEEP"
    assert "9 levels" in nested.value.message and "limit of 8" in nested.value.message
    check_limits({"a": {"b": 1}}, Limits(max_bytes=64, max_depth=2), "desired")


def test_normalise_turns_integral_floats_into_ints() -> None:
    assert normalise({"a": 5.0, "b": [1.5, 2.0], "c": True}) == {"a": 5, "b": [1.5, 2], "c": True}
    assert isinstance(normalise({"a": 5.0})["a"], int)
