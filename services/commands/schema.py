"""Checking a command's parameters against its template definition's JSON-schema-like `parameters`.

A deliberate subset of JSON Schema, enough to describe device commands; unknown keywords are ignored:
`type` (object, string, number, integer, boolean, array, null, or a list of them), `properties`,
`required`, `additionalProperties` (false or a schema), `enum`, `minimum`, `maximum`,
`exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `items`, `minItems`, `maxItems`.
Values come from a protobuf Struct, so every number is a float: "integer" accepts whole numbers.
Violations name the field path as the API sees it: `parameters.speed`, `parameters.steps[2].angle`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from muster.runtime.errors import FieldViolation

MAX_DEPTH = 16


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "array"
    return type(value).__name__


def _is(value: Any, expected: str) -> bool:
    actual = _type_of(value)
    if expected == "integer":
        return actual == "number" and float(value).is_integer()
    return actual == expected


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(schema: Mapping[str, Any], value: Any, path: str = "parameters") -> list[FieldViolation]:
    """Every violation of `schema` by `value` (empty when it conforms)."""
    found: list[FieldViolation] = []
    _check(schema, value, path, found, 0)
    return found


def _check(schema: Mapping[str, Any], value: Any, path: str, found: list[FieldViolation], depth: int) -> None:
    if depth > MAX_DEPTH:
        found.append(FieldViolation(path, f"nests deeper than {MAX_DEPTH} levels"))
        return
    expected = schema.get("type")
    if expected is not None:
        types = [expected] if isinstance(expected, str) else list(expected)
        if not any(_is(value, t) for t in types):
            found.append(FieldViolation(path, f"must be {' or '.join(types)}, not {_type_of(value)}"))
            return
    if "enum" in schema and value not in list(schema["enum"]):
        choices = ", ".join(_shown(v) for v in schema["enum"])
        found.append(FieldViolation(path, f"must be one of {choices}; got {_shown(value)}"))
    if _type_of(value) == "number":
        _check_number(schema, float(value), path, found)
    elif isinstance(value, str):
        _check_length(schema, len(value), path, found, "characters")
    elif isinstance(value, Mapping):
        _check_object(schema, value, path, found, depth)
    elif _type_of(value) == "array":
        _check_length(schema, len(value), path, found, "items", keys=("minItems", "maxItems"))
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                _check(items, item, f"{path}[{i}]", found, depth + 1)


def _check_number(schema: Mapping[str, Any], value: float, path: str, found: list[FieldViolation]) -> None:
    bounds: tuple[tuple[str, Callable[[float, float], bool], str], ...] = (
        ("minimum", operator.ge, "at least"), ("maximum", operator.le, "at most"),
        ("exclusiveMinimum", operator.gt, "more than"), ("exclusiveMaximum", operator.lt, "less than"))
    for keyword, holds, words in bounds:
        bound = schema.get(keyword)
        if isinstance(bound, int | float) and not isinstance(bound, bool) and not holds(value, bound):
            found.append(FieldViolation(path, f"must be {words} {bound:g}; got {value:g}"))


def _check_length(schema: Mapping[str, Any], size: int, path: str, found: list[FieldViolation], unit: str,
                  keys: tuple[str, str] = ("minLength", "maxLength")) -> None:
    low, high = schema.get(keys[0]), schema.get(keys[1])
    if isinstance(low, int | float) and size < low:
        found.append(FieldViolation(path, f"must have at least {low:g} {unit}; has {size}"))
    if isinstance(high, int | float) and size > high:
        found.append(FieldViolation(path, f"must have at most {high:g} {unit}; has {size}"))


def _check_object(schema: Mapping[str, Any], value: Mapping[str, Any], path: str, found: list[FieldViolation],
                  depth: int) -> None:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    for key in schema.get("required") or ():
        if key not in value:
            found.append(FieldViolation(f"{path}.{key}", "is required"))
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        child = properties.get(key)
        if isinstance(child, Mapping):
            _check(child, item, f"{path}.{key}", found, depth + 1)
        elif extra is False:
            allowed = ", ".join(sorted(properties)) or "none"
            found.append(FieldViolation(f"{path}.{key}", f"is not a parameter of this command (allowed: {allowed})"))
        elif isinstance(extra, Mapping):
            _check(extra, item, f"{path}.{key}", found, depth + 1)
