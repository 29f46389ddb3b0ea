"""Reading what devices send on `twin/reported`: every way a message can be malformed becomes a
`Refusal` with a stable code (answered on the device's `errors` topic), never an exception.

    {"state": {...merge patch...},
     "rejected": {"/fan/speed": {"code": "OUT_OF_RANGE", "message": "max 3000"}, "/led": null},
     "version": 7}

`rejected` (optional) is how a device says it will not apply a desired value: keyed by JSON Pointer
into the desired document (a pointer covers everything below it), `null` withdraws an earlier
rejection. `version` (optional) is the desired version the device acted on; a rejection stays in force
until desired is written again at or below its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.twin.documents import Limits, depth, normalise, parse_pointer
from services.twin.twin import Report

MAX_CODE_CHARS = 64
MAX_MESSAGE_CHARS = 512


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def _object(data: bytes, limits: Limits) -> dict[str, Any] | Refusal:
    limit = limits.max_bytes * 2  # a report carries a patch plus a little envelope
    if len(data) > limit:
        return Refusal("PAYLOAD_TOO_LARGE", f"the message is {len(data)} bytes, over the limit of {limit} bytes")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return Refusal("NOT_JSON", f"the payload is not UTF-8 JSON: {exc}")
    if not isinstance(value, dict):
        return Refusal("NOT_OBJECT", f"the payload must be a JSON object, not {type(value).__name__}")
    return value


def parse_get(data: bytes, limits: Limits) -> Refusal | None:
    """`twin/get` takes `{}` (anything that is a JSON object)."""
    parsed = _object(data or b"{}", limits)
    return parsed if isinstance(parsed, Refusal) else None


def _rejections(value: Any) -> dict[str, tuple[str, str] | None] | Refusal:
    if not isinstance(value, dict):
        return Refusal("INVALID_FIELD", "rejected: must be an object of JSON Pointer -> {code, message} or null")
    found: dict[str, tuple[str, str] | None] = {}
    for path, entry in value.items():
        try:
            parse_pointer(path)
        except ValueError as exc:
            return Refusal("INVALID_FIELD", f"rejected: {exc}")
        if entry is None:
            found[path] = None
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("code"), str) or not entry["code"]:
            return Refusal("INVALID_FIELD", f"rejected.{path}: must be {{\"code\": \"...\", \"message\": \"...\"}} "
                                            "or null")
        message = entry.get("message", "")
        if not isinstance(message, str):
            return Refusal("INVALID_FIELD", f"rejected.{path}.message: must be a string")
        found[path] = (entry["code"][:MAX_CODE_CHARS], message[:MAX_MESSAGE_CHARS])
    return found


def parse_report(data: bytes, limits: Limits) -> Report | Refusal:
    parsed = _object(data, limits)
    if isinstance(parsed, Refusal):
        return parsed
    unknown = sorted(parsed.keys() - {"state", "rejected", "version"})
    if unknown:
        return Refusal("INVALID_FIELD", f"unknown member(s) {', '.join(unknown)}; a report has state, rejected "
                                        "and version")
    state = parsed.get("state", {})
    if not isinstance(state, dict):
        return Refusal("INVALID_FIELD", f"state: must be a JSON object (a merge patch), not {type(state).__name__}")
    if depth(state) > limits.max_depth:
        return Refusal("DOCUMENT_TOO_DEEP",
                       f"state is nested {depth(state)} levels deep, over the limit of {limits.max_depth}")
    version = parsed.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        return Refusal("INVALID_FIELD", "version: must be a non-negative integer (the desired version acted on)")
    rejected = _rejections(parsed.get("rejected", {}))
    if isinstance(rejected, Refusal):
        return rejected
    if not state and not rejected:
        return Refusal("INVALID_FIELD", "the report changes nothing: send state and/or rejected")
    return Report(state=normalise(state), rejected=rejected, version=version)
