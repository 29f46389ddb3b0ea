"""Bulk import decisions for one row, given what the fleet already holds. Pure: no I/O.

A row's key is its serial (unique within the tenant), or, for a device without a serial, its name.
A matched device takes the values of the columns the file has (an empty cell clears the field);
if nothing differs the row is UNCHANGED and nothing is written. The device rules themselves are the
domain's (`validate_device`); this module only maps their field paths onto CSV columns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from muster.runtime.errors import FieldViolation, InvalidArgument
from services.registry.bulk_csv import ParsedRow
from services.registry.domain import Device, validate_device

# Domain attribute -> update-mask path (as UpdateDevice names them).
MASK_PATHS = {"site_id": "site", "template_id": "template"}


class Outcome(enum.IntEnum):
    CREATED = 1
    UPDATED = 2
    UNCHANGED = 3
    ERROR = 4


@dataclass(frozen=True)
class RowResult:
    row: int
    serial: str
    outcome: Outcome
    device_id: str = ""
    errors: tuple[FieldViolation, ...] = ()


def error(row: int, serial: str, *violations: FieldViolation) -> RowResult:
    return RowResult(row, serial, Outcome.ERROR, errors=tuple(violations))


def _by_column(violation: FieldViolation) -> FieldViolation:
    """`device.location.latitude` -> column `latitude`; `device.labels.floor` -> column `labels`, with
    the label key kept in the reason."""
    column, _, rest = violation.field.removeprefix("device.").partition(".")
    if column == "location" and rest:
        return FieldViolation(rest, violation.description)
    return FieldViolation(column, f"{rest!r}: {violation.description}" if rest else violation.description)


def check(device: Device) -> list[FieldViolation]:
    """The domain's device rules, with each problem named by its CSV column."""
    try:
        validate_device(device)
    except InvalidArgument as exc:
        return [_by_column(v) for v in exc.violations]
    return []


def new_device(row: ParsedRow, *, tenant_id: str, device_id: str, now: datetime) -> Device:
    return replace(Device(tenant_id=tenant_id, id=device_id, serial=row.serial, create_time=now, update_time=now),
                   **row.values)


def apply_row(current: Device, row: ParsedRow, now: datetime) -> tuple[Device, frozenset[str]]:
    """The device as the row describes it, and the update-mask paths that changed (empty: unchanged)."""
    changed = {attr: value for attr, value in row.values.items() if getattr(current, attr) != _normal(value)}
    if not changed:
        return current, frozenset()
    updated = replace(current, **changed, update_time=now, version=current.version + 1)
    return updated, frozenset(MASK_PATHS.get(attr, attr) for attr in changed)


def _normal(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else value


def key_problem(row: ParsedRow, by_serial: Device | None, by_name: Device | None) -> FieldViolation | None:
    """Why the row's serial and name point at different devices (or a serial would change), if they do."""
    if row.serial:
        if by_name is not None and (by_serial is None or by_serial.id != by_name.id):
            return FieldViolation("name", f"{by_name.name} has serial {by_name.serial!r}, not {row.serial!r}: "
                                          "import cannot change a serial")
        return None
    if by_name is None:
        return FieldViolation("serial", "is required to create a device (it is the import key)")
    if by_name.serial:
        return FieldViolation("serial", f"is empty but {by_name.name} has serial {by_name.serial!r}: "
                                        "import cannot change a serial")
    return None
