"""What ListConnectionEvents lets callers filter on (`filter`, the shared AIP-160 subset): the entry's
kind and its disconnect reason, the reason as the API shows it (a clean close next to a will reads as
CONNECTION_LOST)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

from muster.runtime.filtering import FieldKind, FilterField, FilterSchema, parse_filter, to_sql
from services.twin.connectivity import DisconnectReason, Kind
from services.twin.connectivity_repository import effective_reason
from services.twin.connectivity_tables import connection_log

_KINDS = {**{k.name: int(k) for k in Kind}, **{f"CONNECTION_EVENT_KIND_{k.name}": int(k) for k in Kind}}
_GIVEN = [r for r in DisconnectReason if r is not DisconnectReason.UNSPECIFIED]
_REASONS = {**{r.name: int(r) for r in _GIVEN}, **{f"DISCONNECT_REASON_{r.name}": int(r) for r in _GIVEN}}

SCHEMA = FilterSchema.of(FilterField("kind", FieldKind.ENUM, enum_values=_KINDS),
                         FilterField("reason", FieldKind.ENUM, enum_values=_REASONS))


def connection_filter(text: str) -> ColumnElement[bool] | None:
    """The SQL condition of a request's `filter` (None when empty); INVALID_ARGUMENT naming `filter`."""
    expr = parse_filter(text, SCHEMA)
    if expr is None:
        return None
    columns: dict[str, Any] = {"kind": connection_log.c.kind, "reason": effective_reason()}
    return to_sql(expr, columns)
