"""Update masks (AIP-134): which fields an Update RPC may change, checked before anything is read,
so a typo fails loudly instead of silently changing nothing."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from muster.runtime.errors import InvalidArgument


def validate_update_mask(paths: Sequence[str], allowed: Collection[str], *, field: str = "update_mask",
                         output_only: Collection[str] = ()) -> frozenset[str]:
    """The set of fields to change. `"*"` means every allowed field; duplicates are harmless.
    Maps (e.g. `labels`) are replaced whole: `labels.floor` is refused rather than half-supported.
    Naming an `output_only` field gets a message saying so instead of "unknown"."""
    if not paths:
        raise InvalidArgument.field(field, "required; list the fields to change or '*'")
    listing = ", ".join(sorted(allowed))
    chosen: set[str] = set()
    for path in paths:
        if path == "*":
            chosen.update(allowed)
        elif path in allowed:
            chosen.add(path)
        elif path in output_only:
            raise InvalidArgument.field(field, f'"{path}" is output only; updatable fields: {listing}')
        elif path.partition(".")[0] in allowed:
            head = path.partition(".")[0]
            raise InvalidArgument.field(
                field, f'"{path}": {head} can only be replaced as a whole; use "{head}"')
        else:
            shown = path if path.strip() else "(empty path)"
            raise InvalidArgument.field(field, f'unknown field "{shown}"; updatable fields: {listing}, or "*"')
    return frozenset(chosen)


def apply_update_mask(current: Mapping[str, Any], update: Mapping[str, Any],
                      mask: Collection[str]) -> dict[str, Any]:
    """A copy of `current` with the masked fields taken from `update` (a field missing from
    `update` is cleared to None), so unmasked fields keep their stored values."""
    merged = dict(current)
    for path in mask:
        merged[path] = update.get(path)
    return merged
