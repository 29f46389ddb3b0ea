"""The device CSV format of bulk import/export: columns, cells and records. Pure: no I/O, no rules
beyond the format itself (the device rules stay in domain.py).

The format (docs/operations.md, "Bulk import/export"): UTF-8, comma-separated, RFC 4180 quoting,
header row first. Columns, in export order:

    name, serial, display_name, state, site, template, labels, notes, latitude, longitude, altitude

`name` (devices/{id}) and `state` are written by export and read-only on import (`name` only
identifies a serial-less device; `state` is ignored: lifecycle changes are RPCs of their own). An
import needs `serial` or `name`; any other column may be left out, and a column left out leaves that
field of existing devices alone. `labels` is `key=value;key=value`, with `\\` escaping `;`, `=` and
`\\` inside values. `latitude` and `longitude` come together (both empty: no location).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from muster.runtime.errors import FieldViolation, InvalidArgument
from services.registry.domain import DEVICE_ID_PATTERN, ID_PATTERN, Device, Location

EXPORT_COLUMNS = ("name", "serial", "display_name", "state", "site", "template", "labels", "notes",
                  "latitude", "longitude", "altitude")
READ_ONLY = frozenset({"name", "state"})
KEYS = frozenset({"serial", "name"})
MAX_RECORD_BYTES = 64 * 1024
"""A record (row) longer than this ends the import: most likely an unterminated quote."""

_BOM = b"\xef\xbb\xbf"


# --- labels: key=value;key=value ----------------------------------------------------------------

def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace("=", "\\=")


def encode_labels(labels: Mapping[str, str]) -> str:
    return ";".join(f"{_escape(key)}={_escape(labels[key])}" for key in sorted(labels))


def _split(text: str, separator: str) -> list[str]:
    """Split on unescaped `separator`, keeping escapes in the parts (undone by `_unescape`)."""
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for ch in text:
        if escaped or ch != "\\":
            out.append(ch)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def decode_labels(text: str) -> dict[str, str]:
    """`key=value;key=value` -> dict; ValueError naming the bad entry."""
    labels: dict[str, str] = {}
    if not text.strip():
        return labels
    if "\\" not in text:  # the common case: no escapes, plain splits
        for entry in text.split(";"):
            if entry.strip():
                key, separator, value = entry.partition("=")
                if not separator:
                    raise ValueError(f"entry {entry!r} is not key=value")
                if key.strip() in labels:
                    raise ValueError(f"label {key.strip()!r} appears twice")
                labels[key.strip()] = value
        return labels
    for entry in _split(text, ";"):
        if not entry.strip():
            continue  # tolerate a trailing ';'
        pair = _split(entry, "=")
        if len(pair) < 2:
            raise ValueError(f"entry {entry!r} is not key=value")
        key, value = _unescape(pair[0]).strip(), _unescape("=".join(pair[1:]))
        if key in labels:
            raise ValueError(f"label {key!r} appears twice")
        labels[key] = value
    return labels


# --- header and rows ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, cells: Sequence[str]) -> Header:
        """The header row, or INVALID_ARGUMENT (field `header`) before any row is read."""
        columns = tuple(c.strip().lower() for c in cells)
        problems = []
        for i, column in enumerate(columns):
            if column not in EXPORT_COLUMNS:
                problems.append(FieldViolation("header", f"column {i + 1} {column!r} is not one of "
                                               f"{', '.join(EXPORT_COLUMNS)}"))
            elif column in columns[:i]:
                problems.append(FieldViolation("header", f"column {column!r} appears twice"))
        if not KEYS & set(columns):
            problems.append(FieldViolation("header", "needs a 'serial' column (the import key) or 'name'"))
        if ("latitude" in columns) != ("longitude" in columns):
            problems.append(FieldViolation("header", "'latitude' and 'longitude' come together"))
        if "altitude" in columns and "latitude" not in columns:
            problems.append(FieldViolation("header", "'altitude' needs 'latitude' and 'longitude'"))
        if problems:
            raise InvalidArgument("the CSV header is not usable: " + "; ".join(p.description for p in problems),
                                  violations=problems)
        return cls(columns)


@dataclass(frozen=True)
class ParsedRow:
    """One data row: its key and the device fields (domain attribute -> value) of the columns present."""

    row: int
    serial: str
    device_id: str | None
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowError:
    row: int
    serial: str
    violations: tuple[FieldViolation, ...]


def _reference(text: str, collection: str, column: str, problems: list[FieldViolation]) -> str | None:
    value = text.strip().removeprefix(f"{collection}/")
    if not value:
        return None
    if not ID_PATTERN.match(value):
        problems.append(FieldViolation(column, f"{text!r} is not an id such as 'berlin' or '{collection}/berlin'"))
    return value


def _number(text: str, column: str, problems: list[FieldViolation]) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(FieldViolation(column, f"{text!r} is not a number"))
        return None
    if not math.isfinite(value):
        problems.append(FieldViolation(column, "must be a finite number"))
        return None
    return value


def _location(cells: Mapping[str, str], problems: list[FieldViolation]) -> Location | None:
    latitude = _number(cells["latitude"], "latitude", problems)
    longitude = _number(cells["longitude"], "longitude", problems)
    altitude = _number(cells.get("altitude", ""), "altitude", problems)
    if latitude is None and longitude is None:
        if altitude is not None:
            problems.append(FieldViolation("altitude", "needs latitude and longitude"))
        return None
    if latitude is None or longitude is None:
        missing = "latitude" if latitude is None else "longitude"
        if not any(p.field == missing for p in problems):
            problems.append(FieldViolation(missing, "is required when the other coordinate is given"))
        return None
    return Location(latitude, longitude, altitude or 0.0)


def parse_row(header: Header, row: int, cells: Sequence[str]) -> ParsedRow | RowError:
    """Cells -> the fields they set, or the row's problems (column -> reason). Device rules such as
    label key syntax and text limits are checked later, by the domain, on the resulting device."""
    problems: list[FieldViolation] = []
    if len(cells) > len(header.columns):
        problems.append(FieldViolation("", f"has {len(cells)} cells; the header has {len(header.columns)}"))
    by_column = {column: cells[i] if i < len(cells) else "" for i, column in enumerate(header.columns)}
    serial = by_column.get("serial", "").strip()
    device_id = None
    name = by_column.get("name", "").strip()
    if name:
        device_id = name.removeprefix("devices/")
        if not DEVICE_ID_PATTERN.match(device_id):
            problems.append(FieldViolation("name", f"{name!r} is not a device name such as devices/<20 of [a-z0-9]>"))
    if not serial and not device_id:
        problems.append(FieldViolation("serial", "is required: it is the import key (or give the name of an "
                                                 "existing device without a serial)"))
    values: dict[str, Any] = {}
    for column in ("display_name", "notes"):
        if column in by_column:
            values[column] = by_column[column]
    if "site" in by_column:
        values["site_id"] = _reference(by_column["site"], "sites", "site", problems)
    if "template" in by_column:
        values["template_id"] = _reference(by_column["template"], "templates", "template", problems)
    if "labels" in by_column:
        try:
            values["labels"] = decode_labels(by_column["labels"])
        except ValueError as exc:
            problems.append(FieldViolation("labels", f"{exc}; write key=value;key=value"))
    if "latitude" in by_column:
        values["location"] = _location(by_column, problems)
    if problems:
        return RowError(row, serial, tuple(problems))
    return ParsedRow(row, serial, device_id, values)


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def device_cells(device: Device) -> list[str]:
    """One export row, in EXPORT_COLUMNS order."""
    location = device.location
    return [device.name, device.serial, device.display_name, device.state.name, device.site_id or "",
            device.template_id or "", encode_labels(device.labels), device.notes,
            _cell(location.latitude if location else None), _cell(location.longitude if location else None),
            _cell(location.altitude if location else None)]


def to_csv(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


# --- records out of a byte stream -----------------------------------------------------------------

class RecordTooLong(Exception):
    def __init__(self, row: int) -> None:
        super().__init__(f"row {row} is over {MAX_RECORD_BYTES} bytes, or a quoted field never ends")
        self.row = row


@dataclass(frozen=True)
class Record:
    row: int
    cells: list[str] | None  # None: not valid UTF-8 / not parseable
    problem: str = ""


class RecordSplitter:
    """Turns chunks of bytes into CSV records as soon as each is complete, without holding the file.

    A record ends at a newline outside quotes: `"` never occurs inside a UTF-8 multi-byte sequence,
    so counting quote bytes per line tells whether a newline is inside a quoted field. Each record is
    decoded on its own, so a bad byte costs only its row."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._quotes = 0  # quote bytes in _pending (complete lines only)
        self._scanned = 0  # bytes of _pending already split into lines
        self._row = 0
        self._started = False

    def feed(self, chunk: bytes) -> Iterator[Record]:
        if not self._started:
            self._pending += chunk
            if len(self._pending) < len(_BOM) and _BOM.startswith(bytes(self._pending)):
                return  # maybe a BOM still arriving
            if self._pending.startswith(_BOM):
                del self._pending[:len(_BOM)]
            self._started = True
        else:
            self._pending += chunk
        yield from self._records()

    def close(self) -> Iterator[Record]:
        self._started = True
        yield from self._records()
        if self._pending:
            self._row += 1
            if (self._quotes + self._pending.count(b'"', self._scanned)) % 2:
                yield Record(self._row, None, "a quoted field is not closed at the end of the file")
            else:
                yield self._decode(bytes(self._pending))
            self._pending.clear()

    def _records(self) -> Iterator[Record]:
        start = 0  # start of the current (incomplete) record in _pending
        position = self._scanned
        while True:
            newline = self._pending.find(b"\n", position)
            if newline < 0:
                break
            self._quotes += self._pending.count(b'"', position, newline)
            position = newline + 1
            if self._quotes % 2 == 0:
                self._row += 1
                yield self._decode(bytes(self._pending[start:position]))
                start = position
                self._quotes = 0
        del self._pending[:start]
        self._scanned = position - start
        if len(self._pending) > MAX_RECORD_BYTES:
            raise RecordTooLong(self._row + 1)

    def _decode(self, raw: bytes) -> Record:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Record(self._row, None, f"is not valid UTF-8 (byte {exc.start + 1})")
        try:
            rows = list(csv.reader([text], strict=True))
        except csv.Error as exc:
            return Record(self._row, None, f"is not valid CSV ({exc})")
        return Record(self._row, rows[0] if rows else [])
