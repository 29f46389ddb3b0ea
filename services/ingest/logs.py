"""Device logs (`muster/v1/devices/{id}/logs`): parsing and turning a batch into rows, without I/O.

A payload is `{"ts": ..., "level": "debug"/"info"/"warning"/"error", "message": "...", "fields": {...}}`
or an array of those. `ts` follows the telemetry rules; `fields` is optional. Each entry's index is its
position in the message, the dedup key with the stream sequence.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from services.ingest.normalise import DeviceProfile
from services.ingest.payloads import Limits, Reason, Rejection, decode, entries, parse_time
from services.ingest.processing import BatchProcessor, Inbound

MAX_MESSAGE = 8192

LogRow = tuple[str, str, datetime, int, str, str, int, int]
"""(tenant_id, device_id, ts, level, message, fields as JSON text, stream_seq, idx): COPY order."""

LOG_COLUMNS = ("tenant_id", "device_id", "ts", "level", "message", "fields", "stream_seq", "idx")


class LogLevel(enum.IntEnum):
    """Stored as numbers so "at least warning" is a comparison; mirrors muster.ingest.v1.LogLevel."""

    DEBUG = 1
    INFO = 2
    WARNING = 3
    ERROR = 4


@dataclass(frozen=True)
class LogEntry:
    index: int
    time: datetime
    level: LogLevel
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


def _entry(raw: Any, index: int, received: datetime, limits: Limits, where: str, now: datetime | None
           ) -> tuple[LogEntry | None, Rejection | None]:
    if not isinstance(raw, dict):
        return None, Rejection(Reason.NOT_OBJECT, f'{where}expected {{"level": ..., "message": ...}}')
    when, bad = parse_time(raw.get("ts"), received, limits, now)
    if when is None:
        assert bad is not None
        return None, Rejection(bad.code, where + bad.message)
    level = raw.get("level", "info")
    if not isinstance(level, str) or level.upper() not in LogLevel.__members__:
        return None, Rejection(Reason.INVALID_VALUE, f"{where}level must be one of debug, info, warning, error")
    message = raw.get("message")
    if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE:
        return None, Rejection(Reason.INVALID_VALUE, f"{where}message must be a string of 1-{MAX_MESSAGE} characters")
    fields = raw.get("fields", {})
    if not isinstance(fields, dict):
        return None, Rejection(Reason.INVALID_VALUE, f"{where}fields must be an object")
    return LogEntry(index, when, LogLevel[level.upper()], message, fields), None


def parse_logs(data: bytes, received: datetime, limits: Limits,
               now: datetime | None = None) -> tuple[list[LogEntry], list[Rejection]]:
    document, rejection = decode(data, limits)
    if rejection is None:
        items, rejection = entries(document, limits, "log")
    if rejection is not None:
        return [], [rejection]
    found: list[LogEntry] = []
    rejections: list[Rejection] = []
    for index, raw in enumerate(items):
        where = f"entry {index}: " if isinstance(document, list) else ""
        entry, bad = _entry(raw, index, received, limits, where, now)
        if entry is not None:
            found.append(entry)
        elif bad is not None:
            rejections.append(bad)
    return found, rejections


def log_row(profile: DeviceProfile, entry: LogEntry, stream_seq: int) -> LogRow:
    return (profile.tenant_id, profile.device_id, entry.time, int(entry.level), entry.message,
            orjson.dumps(entry.fields).decode(), stream_seq, entry.index)


class LogProcessor(BatchProcessor[LogRow]):
    what = "log"

    def convert(self, message: Inbound, profile: DeviceProfile,
                now: datetime) -> tuple[list[LogRow], list[Rejection]]:
        found, rejections = parse_logs(message.data, message.received, self._limits, now)
        return [log_row(profile, entry, message.stream_seq) for entry in found], rejections
