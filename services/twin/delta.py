"""The structured delta between a twin's desired and reported documents, and convergence per desired key.

Documents are compared path by path: where both sides hold an object, their members are compared one
by one; anything else (numbers, strings, booleans, arrays) is a value compared whole. Each leaf path is
ADDED (desired only), REMOVED (reported only), CHANGED (both, different) or UNCHANGED.

Convergence is judged per desired leaf: APPLIED when the device reports the desired value, REJECTED when
the device reported an error for that path (or a path above it) after the desired value was written,
PENDING otherwise. A twin is in sync when every desired leaf is APPLIED; reported-only keys (REMOVED)
do not count against it: devices report more than operators set.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.twin.documents import Document, KeyPath, Metadata, parse_pointer, pointer, same_value

MISSING: Any = object()


class Kind(enum.IntEnum):
    ADDED = 1
    REMOVED = 2
    CHANGED = 3
    UNCHANGED = 4


class Convergence(enum.IntEnum):
    PENDING = 1
    APPLIED = 2
    REJECTED = 3


@dataclass(frozen=True)
class Entry:
    """One leaf path: its kind, the desired value (new) and the reported value (old); MISSING if absent."""

    path: str
    kind: Kind
    desired: Any
    reported: Any


@dataclass(frozen=True)
class Rejection:
    """A device's refusal of the desired value at `path` (and below), as of desired `version`."""

    code: str
    message: str
    version: int
    seq: int  # the report that carried it (newer reports replace it)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "version": self.version, "seq": self.seq}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rejection:
        return cls(code=str(data["code"]), message=str(data["message"]), version=int(data["version"]),
                   seq=int(data["seq"]))


@dataclass(frozen=True)
class KeyStatus:
    path: str
    status: Convergence
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class Delta:
    entries: tuple[Entry, ...]
    convergence: tuple[KeyStatus, ...]

    @property
    def in_sync(self) -> bool:
        return all(key.status is Convergence.APPLIED for key in self.convergence)

    def pending_patch(self) -> Document:
        """What the device still has to apply: desired values of ADDED and CHANGED paths, nested as a
        merge patch (what `twin/desired` carries as `delta`)."""
        patch: Document = {}
        for entry in self.entries:
            if entry.kind in (Kind.ADDED, Kind.CHANGED):
                keys = parse_pointer(entry.path)
                node = patch
                for key in keys[:-1]:
                    node = node.setdefault(key, {})
                node[keys[-1]] = entry.desired
        return patch


def compare(desired: Mapping[str, Any], reported: Mapping[str, Any], prefix: KeyPath = ()) -> list[Entry]:
    """Every leaf path of either document, in path order within each object."""
    entries: list[Entry] = []
    for key in sorted(desired.keys() | reported.keys()):
        path = (*prefix, key)
        want, have = desired.get(key, MISSING), reported.get(key, MISSING)
        if isinstance(want, dict) and isinstance(have, dict) and (want or have):
            entries.extend(compare(want, have, path))
        elif isinstance(want, dict) and want and have is MISSING:
            entries.extend(compare(want, {}, path))  # an object only desired: its leaves, one by one
        elif isinstance(have, dict) and have and want is MISSING:
            entries.extend(compare({}, have, path))
        elif have is MISSING:
            entries.append(Entry(pointer(path), Kind.ADDED, want, MISSING))
        elif want is MISSING:
            entries.append(Entry(pointer(path), Kind.REMOVED, MISSING, have))
        elif same_value(want, have):
            entries.append(Entry(pointer(path), Kind.UNCHANGED, want, have))
        else:
            entries.append(Entry(pointer(path), Kind.CHANGED, want, have))
    return entries


def _rejection_for(path: str, rejections: Mapping[str, Rejection]) -> Rejection | None:
    """The rejection recorded at `path` or the nearest path above it."""
    best: tuple[int, Rejection] | None = None
    for key, rejection in rejections.items():
        covers = key in ("", path) or path.startswith(key + "/")
        if covers and (best is None or len(key) > best[0]):
            best = (len(key), rejection)
    return best[1] if best else None


def _written_at(path: str, metadata: Metadata) -> int:
    """The desired revision that last wrote `path` (or the object above it)."""
    found = [leaf.seq for key, leaf in metadata.items() if key == path or path.startswith(key + "/")]
    return max(found, default=0)


def delta(desired: Mapping[str, Any], reported: Mapping[str, Any], *, desired_metadata: Metadata,
          rejections: Mapping[str, Rejection]) -> Delta:
    entries = compare(desired, reported)
    statuses: list[KeyStatus] = []
    for entry in entries:
        if entry.kind is Kind.REMOVED:
            continue
        if entry.kind is Kind.UNCHANGED:
            statuses.append(KeyStatus(entry.path, Convergence.APPLIED))
            continue
        rejection = _rejection_for(entry.path, rejections)
        if rejection is not None and rejection.version >= _written_at(entry.path, desired_metadata):
            statuses.append(KeyStatus(entry.path, Convergence.REJECTED, rejection.code, rejection.message))
        else:
            statuses.append(KeyStatus(entry.path, Convergence.PENDING))
    return Delta(entries=tuple(entries), convergence=tuple(statuses))
