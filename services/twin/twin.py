"""The twin aggregate: one per device, its desired and reported documents, and the rules that change them.

Desired changes come from operators (a merge patch, checked against the etag and the limits) and each
makes a new numbered revision. Reported changes come from the device (merge patches ordered by their
JetStream stream sequence, see `documents`). The etag covers the whole twin (both versions) but a
desired write is refused only if *desired* changed since the etag was read: a device reporting every
second must not make every operator write stale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from muster.runtime.errors import Aborted, InvalidArgument
from services.twin.delta import Delta, Rejection, delta
from services.twin.documents import (
    TOMBSTONE_RETENTION,
    Document,
    LimitExceeded,
    Limits,
    Metadata,
    apply_patch,
    check_limits,
    prune_tombstones,
)

DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ETAG = re.compile(r'^(?:W/)?"(\d+)(?:\.(\d+))?"$')


@dataclass(frozen=True)
class Twin:
    tenant_id: str
    device_id: str
    create_time: datetime
    update_time: datetime
    desired: Document = field(default_factory=dict)
    desired_version: int = 0
    desired_metadata: Metadata = field(default_factory=dict)
    reported: Document = field(default_factory=dict)
    reported_version: int = 0
    reported_metadata: Metadata = field(default_factory=dict)
    rejections: Mapping[str, Rejection] = field(default_factory=dict)
    in_sync: bool = True

    @property
    def name(self) -> str:
        return f"devices/{self.device_id}/twin"

    @property
    def device(self) -> str:
        return f"devices/{self.device_id}"

    @property
    def etag(self) -> str:
        return f'"{self.desired_version}.{self.reported_version}"'

    def delta(self) -> Delta:
        return delta(self.desired, self.reported, desired_metadata=self.desired_metadata,
                     rejections=self.rejections)


def new_twin(tenant_id: str, device_id: str, now: datetime) -> Twin:
    return Twin(tenant_id=tenant_id, device_id=device_id, create_time=now, update_time=now)


def check_etag(twin: Twin, etag: str, *, force: bool) -> None:
    """An etag from any read of this twin is current while desired has not changed since; a write
    without one must say so (`force`)."""
    if not etag:
        if force:
            return
        raise InvalidArgument.field("etag", "is required: send the twin's etag (or If-Match), or set force "
                                             "to write whatever the current desired state is")
    match = _ETAG.match(etag.strip())
    if match is None:
        raise InvalidArgument.field("etag", f"{etag!r} is not an etag of a twin; use the etag GetTwin returned")
    if int(match.group(1)) != twin.desired_version:
        raise Aborted(f"{twin.name}: desired state changed since etag {etag} was read (now {twin.etag}, desired "
                      f"revision {twin.desired_version}): read it again and retry", reason="ETAG_MISMATCH")


@dataclass(frozen=True)
class DesiredChange:
    twin: Twin
    applied: Document  # the effective merge patch (empty: nothing changed)
    sync_changed: bool


def _sync(before: Twin, after: Twin) -> tuple[Twin, bool]:
    in_sync = after.delta().in_sync
    return replace(after, in_sync=in_sync), in_sync != before.in_sync


def update_desired(twin: Twin, patch: Mapping[str, Any], *, limits: Limits, now: datetime) -> DesiredChange:
    """Merge `patch` into desired as the next revision. A patch that changes nothing is still a revision
    (the operator asked for it; the history says so) but keeps the documents as they are."""
    version = twin.desired_version + 1
    patched = apply_patch(twin.desired, twin.desired_metadata, patch, seq=version, now=now)
    try:
        check_limits(patched.document, limits, "desired")
    except LimitExceeded as exc:
        raise InvalidArgument.field("patch", exc.message) from None
    after = replace(twin, desired=patched.document, desired_metadata=patched.metadata, desired_version=version,
                    update_time=now)
    after, sync_changed = _sync(twin, after)
    return DesiredChange(twin=after, applied=patched.applied, sync_changed=sync_changed)


@dataclass(frozen=True)
class Report:
    """A parsed `twin/reported` message."""

    state: Document
    rejected: Mapping[str, tuple[str, str] | None]  # JSON Pointer -> (code, message); None clears it
    version: int | None  # the desired version the device acted on, if it said


@dataclass(frozen=True)
class ReportedChange:
    twin: Twin
    applied: Document
    stale: int
    rejections_changed: bool
    sync_changed: bool

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.rejections_changed


def apply_report(twin: Twin, report: Report, *, seq: int, limits: Limits, now: datetime) -> ReportedChange:
    """Merge a device report written with stream sequence `seq`. Raises LimitExceeded (nothing changes)."""
    patched = apply_patch(twin.reported, twin.reported_metadata, report.state, seq=seq, now=now)
    check_limits(patched.document, limits, "reported")
    rejections = dict(twin.rejections)
    changed_rejections = False
    for path, value in report.rejected.items():
        current = rejections.get(path)
        if current is not None and current.seq >= seq:
            continue
        if value is None:
            changed_rejections |= rejections.pop(path, None) is not None
        else:
            version = report.version if report.version is not None else twin.desired_version
            rejections[path] = Rejection(code=value[0], message=value[1], version=version, seq=seq)
            changed_rejections = True
    if not patched.changed and not changed_rejections:
        return ReportedChange(twin=twin, applied={}, stale=patched.stale, rejections_changed=False,
                              sync_changed=False)
    metadata = prune_tombstones(patched.metadata, older_than=now - TOMBSTONE_RETENTION)
    after = replace(twin, reported=patched.document, reported_metadata=metadata, rejections=rejections,
                    reported_version=twin.reported_version + 1, update_time=now)
    after, sync_changed = _sync(twin, after)
    return ReportedChange(twin=after, applied=patched.applied, stale=patched.stale,
                          rejections_changed=changed_rejections, sync_changed=sync_changed)


@dataclass(frozen=True)
class Revision:
    """One desired change: who, when, the patch, and the desired document it produced."""

    tenant_id: str
    device_id: str
    revision: int
    patch: Document
    desired: Document
    actor: str
    create_time: datetime
    rollback_of: int | None = None

    @property
    def name(self) -> str:
        return f"devices/{self.device_id}/twin/revisions/{self.revision}"
