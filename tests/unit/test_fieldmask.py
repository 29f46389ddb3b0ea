"""Update masks: what is accepted, what is refused, and how a mask merges an update."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muster.runtime.errors import InvalidArgument
from muster.runtime.fieldmask import apply_update_mask, validate_update_mask

ALLOWED = ("display_name", "site", "labels", "notes", "location")
OUTPUT_ONLY = ("state", "create_time", "update_time", "etag")


@pytest.mark.parametrize(("paths", "expected"), [
    (["display_name"], {"display_name"}),
    (["labels", "notes"], {"labels", "notes"}),
    (["notes", "notes"], {"notes"}),
    (["*"], set(ALLOWED)),
    (["*", "notes"], set(ALLOWED)),
])
def test_valid_mask_selects_fields(paths: list[str], expected: set[str]) -> None:
    assert validate_update_mask(paths, ALLOWED, output_only=OUTPUT_ONLY) == expected


@pytest.mark.parametrize(("paths", "message"), [
    ([], "required; list the fields to change or '*'"),
    (["colour"], 'unknown field "colour"; updatable fields: display_name, labels, location, notes, site, or "*"'),
    (["notes", "colour"], 'unknown field "colour"'),
    (["state"], '"state" is output only; updatable fields: display_name, labels'),
    (["labels.floor"], '"labels.floor": labels can only be replaced as a whole; use "labels"'),
    ([""], 'unknown field "(empty path)"'),
    (["Display_Name"], 'unknown field "Display_Name"'),
])
def test_bad_mask_is_explained(paths: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_update_mask(paths, ALLOWED, output_only=OUTPUT_ONLY)
    assert caught.value.violations[0].field == "update_mask"
    assert message in caught.value.violations[0].description


def test_output_only_field_is_unknown_when_not_declared() -> None:
    with pytest.raises(InvalidArgument, match='unknown field "state"'):
        validate_update_mask(["state"], ALLOWED)


def test_violation_names_the_request_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_update_mask([], ALLOWED, field="site_mask")
    assert caught.value.message.startswith("site_mask: required")


def test_apply_changes_only_masked_fields_and_clears_missing_ones() -> None:
    current = {"display_name": "old", "notes": "keep", "labels": {"a": "1"}}
    update = {"display_name": "new", "notes": "ignored"}
    assert apply_update_mask(current, update, {"display_name", "labels"}) == {
        "display_name": "new", "notes": "keep", "labels": None}
    assert current["display_name"] == "old"


@given(st.lists(st.sampled_from([*ALLOWED, "*"]), min_size=1))
def test_any_mask_of_allowed_paths_is_accepted_and_within_allowed(paths: list[str]) -> None:
    chosen = validate_update_mask(paths, ALLOWED)
    assert chosen <= set(ALLOWED)
    assert chosen == (set(ALLOWED) if "*" in paths else set(paths))
