"""The JSON-schema subset command parameters are checked against: each keyword, and field paths that
name the offending parameter."""

from __future__ import annotations

from typing import Any

import pytest

from services.commands.schema import validate

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mode"],
    "additionalProperties": False,
    "properties": {
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "speed": {"type": "number", "minimum": 0, "maximum": 100},
        "steps": {"type": "integer", "exclusiveMinimum": 0},
        "label": {"type": "string", "minLength": 2, "maxLength": 5},
        "flag": {"type": "boolean"},
        "points": {"type": "array", "maxItems": 2, "items": {"type": "object", "required": ["x"],
                                                             "properties": {"x": {"type": "number"}}}},
        "note": {"type": ["string", "null"]},
    },
}


def violations(value: Any, schema: dict[str, Any] = SCHEMA) -> dict[str, str]:
    return {v.field: v.description for v in validate(schema, value)}


def test_a_conforming_document_has_no_violations() -> None:
    assert violations({"mode": "fast", "speed": 50.0, "steps": 3.0, "label": "abc", "flag": True,
                       "points": [{"x": 1.0}], "note": None}) == {}


@pytest.mark.parametrize(("value", "field", "words"), [
    ({}, "parameters.mode", "is required"),
    ({"mode": "medium"}, "parameters.mode", "must be one of 'fast', 'slow'; got 'medium'"),
    ({"mode": 1.0}, "parameters.mode", "must be string, not number"),
    ({"mode": "fast", "speed": 101.0}, "parameters.speed", "must be at most 100; got 101"),
    ({"mode": "fast", "speed": -1.0}, "parameters.speed", "must be at least 0; got -1"),
    ({"mode": "fast", "speed": "quick"}, "parameters.speed", "must be number, not string"),
    ({"mode": "fast", "steps": 2.5}, "parameters.steps", "must be integer, not number"),
    ({"mode": "fast", "steps": 0.0}, "parameters.steps", "must be more than 0; got 0"),
    ({"mode": "fast", "label": "a"}, "parameters.label", "must have at least 2 characters; has 1"),
    ({"mode": "fast", "label": "abcdef"}, "parameters.label", "must have at most 5 characters; has 6"),
    ({"mode": "fast", "flag": "yes"}, "parameters.flag", "must be boolean, not string"),
    ({"mode": "fast", "color": "red"}, "parameters.color", "is not a parameter of this command"),
    ({"mode": "fast", "points": [{"x": 1.0}, {}]}, "parameters.points[1].x", "is required"),
    ({"mode": "fast", "points": [{"x": "a"}]}, "parameters.points[0].x", "must be number, not string"),
    ({"mode": "fast", "points": [{"x": 1.0}] * 3}, "parameters.points", "must have at most 2 items; has 3"),
    ({"mode": "fast", "note": 3.0}, "parameters.note", "must be string or null, not number"),
])
def test_each_keyword_names_the_field_and_the_reason(value: Any, field: str, words: str) -> None:
    found = violations(value)
    assert field in found, found
    assert words in found[field]


def test_every_violation_is_reported_at_once() -> None:
    assert set(violations({"speed": 200.0, "extra": 1.0})) == {"parameters.mode", "parameters.speed",
                                                                "parameters.extra"}


def test_an_empty_schema_accepts_anything_and_additional_properties_may_have_a_schema() -> None:
    assert violations({"anything": [1.0, "x"]}, {}) == {}
    typed_extras = {"type": "object", "additionalProperties": {"type": "number"}}
    assert violations({"a": 1.0, "b": "x"}, typed_extras) == {"parameters.b": "must be number, not string"}


def test_unknown_keywords_are_ignored() -> None:
    assert violations({"a": 1.0}, {"type": "object", "format": "whatever", "$comment": "x"}) == {}
