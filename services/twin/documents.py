"""Twin documents: JSON objects changed by JSON merge patches (RFC 7386), with per-leaf metadata.

A merge patch is applied leaf by leaf. Each leaf write (a value, an empty object, or a `null` that
deletes) is recorded in the document's metadata under its JSON Pointer (RFC 6901) with the time and
the sequence number of the write: the desired document's revision, or the JetStream stream sequence
of the device message for the reported one. A write is applied only when its sequence is newer than
every recorded write at, above or below its path, so a late or duplicated device report can never roll
a newer reported value back; deletions leave a tombstone for the same reason (pruned after a while).
With ever-increasing sequences (desired revisions) this is exactly RFC 7386.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

Document = dict[str, Any]
KeyPath = tuple[str, ...]

_DELETE = object()  # a `null` in a patch
_EMPTY_OBJECT = object()  # a `{}` in a patch: ensures an object there, changes nothing inside one


@dataclass(frozen=True)
class Leaf:
    """The last write at one key path: when, by which sequence, and whether it deleted the path."""

    time: datetime
    seq: int
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"t": self.time.isoformat(), "s": self.seq}
        if self.deleted:
            data["d"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Leaf:
        return cls(time=datetime.fromisoformat(data["t"]), seq=int(data["s"]), deleted=bool(data.get("d", False)))


Metadata = dict[str, Leaf]
"""JSON Pointer -> its last write (tombstones included)."""


def pointer(path: KeyPath) -> str:
    """("a", "b/c") -> "/a/b~1c" (RFC 6901)."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in path)


def parse_pointer(text: str) -> KeyPath:
    """"/a/b~1c" -> ("a", "b/c"); "" is the whole document. ValueError if it is not a pointer."""
    if text == "":
        return ()
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not a JSON Pointer: it must start with '/'")
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/"))


def _related(a: str, b: str) -> bool:
    """a is b, an ancestor of b, or a descendant of b."""
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def newest_seq(metadata: Metadata, path: str) -> int:
    """The newest write recorded at, above or below `path` (0 if none)."""
    return max((leaf.seq for key, leaf in metadata.items() if _related(key, path)), default=0)


@dataclass(frozen=True)
class Patched:
    """The outcome of applying a patch: the new document and metadata, what was applied, what was not."""

    document: Document
    metadata: Metadata
    applied: Document  # the writes that took effect, as a merge patch (empty: nothing changed)
    stale: int  # leaf writes dropped because a newer write exists

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def leaf_writes(patch: Mapping[str, Any], prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """The leaves of a merge patch in document order: (path, value | _DELETE | _EMPTY_OBJECT)."""
    for key, value in patch.items():
        path = (*prefix, key)
        if value is None:
            yield path, _DELETE
        elif isinstance(value, dict):
            if value:
                yield from leaf_writes(value, path)
            else:
                yield path, _EMPTY_OBJECT
        else:
            yield path, value


def _parent(document: Document, path: KeyPath) -> Document:
    """The object holding path[-1], turning missing or non-object intermediates into {} (RFC 7386)."""
    node = document
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    return node


def _set_in(target: Document, path: KeyPath, value: Any) -> None:
    node = target
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def apply_patch(document: Document, metadata: Metadata, patch: Mapping[str, Any], *, seq: int,
                now: datetime) -> Patched:
    """Apply `patch` as the write with sequence `seq` at `now` (inputs are not modified)."""
    result = copy.deepcopy(document)
    meta = dict(metadata)
    applied: Document = {}
    stale = 0
    for path, value in leaf_writes(patch):
        key = pointer(path)
        if newest_seq(meta, key) >= seq:
            stale += 1
            continue
        parent = _parent(result, path)
        if value is _EMPTY_OBJECT:
            if isinstance(parent.get(path[-1]), dict):
                continue  # merging {} into an object changes nothing
            parent[path[-1]] = {}
            _set_in(applied, path, {})
        elif value is _DELETE:
            parent.pop(path[-1], None)
            _set_in(applied, path, None)
        else:
            parent[path[-1]] = copy.deepcopy(value)
            _set_in(applied, path, copy.deepcopy(value))
        for other in [k for k in meta if k.startswith(key + "/")]:
            del meta[other]  # replaced along with their ancestor
        meta[key] = Leaf(time=now, seq=seq, deleted=value is _DELETE)
    return Patched(document=result, metadata=meta, applied=applied, stale=stale)


def prune_tombstones(metadata: Metadata, *, older_than: datetime) -> Metadata:
    """Forget deletions written before `older_than`: late reports older than that are not expected."""
    return {key: leaf for key, leaf in metadata.items() if not (leaf.deleted and leaf.time < older_than)}


def live_metadata(document: Document, metadata: Metadata) -> Metadata:
    """The metadata of paths that exist in the document (no tombstones), for callers."""
    return {key: leaf for key, leaf in metadata.items() if not leaf.deleted and _exists(document, parse_pointer(key))}


def _exists(document: Document, path: KeyPath) -> bool:
    node: Any = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def diff_patch(current: Mapping[str, Any], target: Mapping[str, Any]) -> Document:
    """The merge patch that turns `current` into `target` (documents hold no nulls)."""
    patch: Document = {key: None for key in current if key not in target}
    for key, value in target.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
            continue
        old = current[key]
        if isinstance(value, dict) and isinstance(old, dict):
            inner = diff_patch(old, value)
            if inner:
                patch[key] = inner
        elif not same_value(old, value):
            patch[key] = copy.deepcopy(value)
    return patch


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class Limits:
    """Per-document bounds (settings: MUSTER_TWIN_MAX_DOCUMENT_BYTES, MUSTER_TWIN_MAX_DEPTH)."""

    max_bytes: int = 32 * 1024
    max_depth: int = 8


class LimitExceeded(ValueError):
    """A document over a limit; `code` is the device-facing error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def depth(value: Any) -> int:
    """Nesting of objects and arrays: a scalar is 0, {"a": 1} is 1, {"a": {"b": [1]}} is 3."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def encoded_size(document: Mapping[str, Any]) -> int:
    """Bytes of the compact UTF-8 JSON encoding: what the size limit counts."""
    return len(orjson.dumps(document))


def check_limits(document: Mapping[str, Any], limits: Limits, what: str) -> None:
    """Raise LimitExceeded naming the size (or depth) and the limit."""
    size = encoded_size(document)
    if size > limits.max_bytes:
        raise LimitExceeded("DOCUMENT_TOO_LARGE", f"the {what} document would be {size} bytes, over the limit of "
                                         f"{limits.max_bytes} bytes")
    levels = depth(document)
    if levels > limits.max_depth:
        raise LimitExceeded("DOCUMENT_TOO_DEEP", f"the {what} document would be nested {levels} levels deep, over the "
                                        f"limit of {limits.max_depth}")


def normalise(value: Any) -> Any:
    """Integral floats -> ints (google.protobuf.Struct carries every number as a double, so 5 arrives
    as 5.0): documents keep what a person wrote."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


TOMBSTONE_RETENTION = timedelta(hours=24)
