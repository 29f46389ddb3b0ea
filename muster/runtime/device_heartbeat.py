"""The device contract's heartbeat (topic `heartbeat`): its fields and how a payload is read, shared by
the two contexts that consume it (twin keeps the latest health, ingest keeps the history as telemetry)
so both accept and refuse exactly the same messages. Pure: no I/O.

    {"battery": 81, "rssi": -67, "cpu": 12.5, "memory": 40, "disk": 71, "uptime": 86400, "temperature": 41.2}

Every field is optional; a present field must be a number (not a bool), percentages within 0-100. Other
keys are ignored (newer firmware may send more). A malformed heartbeat is refused whole, with a stable code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

FIELDS = ("battery", "rssi", "cpu", "memory", "disk", "uptime", "temperature")
PERCENT_FIELDS = frozenset({"battery", "cpu", "memory", "disk"})
DEFAULT_MAX_BYTES = 4096


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def parse_heartbeat(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, float] | Refusal:
    """The heartbeat's known values (in `FIELDS` order), or why it is refused."""
    if len(data) > max_bytes:
        return Refusal("PAYLOAD_TOO_LARGE", f"the heartbeat is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        document = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError as exc:
        return Refusal("NOT_JSON", f"the heartbeat is not UTF-8 JSON: {exc}")
    if not isinstance(document, dict):
        return Refusal("NOT_OBJECT", f"the heartbeat must be a JSON object, not {type(document).__name__}")
    values: dict[str, float] = {}
    for name in FIELDS:
        if name not in document or document[name] is None:
            continue
        value = document[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return Refusal("INVALID_VALUE", f"{name}: must be a number, not {_kind(value)}")
        if name in PERCENT_FIELDS and not 0 <= value <= 100:
            return Refusal("OUT_OF_RANGE", f"{name}: must be a percentage 0-100 (got {value})")
        if name == "uptime" and value < 0:
            return Refusal("OUT_OF_RANGE", f"uptime: must not be negative (got {value})")
        values[name] = float(value)
    return values


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}.get(type(value), repr(value))
