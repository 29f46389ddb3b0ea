"""Domain <-> protobuf for the twin context (the servicer's and the events' shapes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct, Value

from muster.runtime.timestamps import timestamp_of
from muster.twin.v1 import events_pb2 as ev
from muster.twin.v1 import twin_resources_pb2 as pb
from services.twin.delta import MISSING, Delta
from services.twin.documents import Document, Metadata, live_metadata, normalise
from services.twin.twin import Revision, Twin


def struct_of(document: Mapping[str, Any]) -> Struct:
    message = Struct()
    message.update(document)
    return message


def document_of(message: Struct) -> Document:
    """Struct -> plain JSON, integral numbers as ints (Struct carries every number as a double)."""
    value = normalise(json_format.MessageToDict(message))
    assert isinstance(value, dict)
    return value


def _value(value: Any) -> Value | None:
    if value is MISSING:
        return None
    message = Value()
    json_format.ParseDict(value, message)
    return message


def _metadata(document: Document, metadata: Metadata) -> dict[str, pb.LeafMetadata]:
    return {key: pb.LeafMetadata(update_time=timestamp_of(leaf.time), version=leaf.seq)
            for key, leaf in live_metadata(document, metadata).items()}


def delta_to_proto(twin: Twin, delta: Delta) -> pb.TwinDelta:
    return pb.TwinDelta(
        entries=[pb.DeltaEntry(path=e.path, kind=pb.DeltaKind.ValueType(int(e.kind)), desired=_value(e.desired),
                               reported=_value(e.reported)) for e in delta.entries],
        convergence=[pb.KeyConvergence(path=k.path, status=pb.Convergence.ValueType(int(k.status)), error_code=k.code,
                                       error_message=k.message) for k in delta.convergence],
        in_sync=delta.in_sync, desired_version=twin.desired_version, reported_version=twin.reported_version)


def twin_to_proto(twin: Twin) -> pb.Twin:
    return pb.Twin(
        name=twin.name, desired=struct_of(twin.desired), desired_version=twin.desired_version,
        reported=struct_of(twin.reported), reported_version=twin.reported_version,
        desired_metadata=_metadata(twin.desired, twin.desired_metadata),
        reported_metadata=_metadata(twin.reported, twin.reported_metadata),
        delta=delta_to_proto(twin, twin.delta()), etag=twin.etag, create_time=timestamp_of(twin.create_time),
        update_time=timestamp_of(twin.update_time))


def revision_to_proto(revision: Revision) -> pb.DesiredRevision:
    return pb.DesiredRevision(name=revision.name, revision=revision.revision, patch=struct_of(revision.patch),
                              desired=struct_of(revision.desired), actor=revision.actor,
                              create_time=timestamp_of(revision.create_time), rollback_of=revision.rollback_of or 0)


def desired_changed(twin: Twin, patch: Document, actor: str, rollback_of: int | None) -> ev.DesiredStateChanged:
    return ev.DesiredStateChanged(device=twin.device, version=twin.desired_version, patch=struct_of(patch),
                                  actor=actor, rollback_of=rollback_of or 0)


def reported_changed(twin: Twin, patch: Document) -> ev.ReportedStateChanged:
    return ev.ReportedStateChanged(device=twin.device, version=twin.reported_version, patch=struct_of(patch))


def sync_changed(twin: Twin) -> ev.TwinSyncChanged:
    return ev.TwinSyncChanged(device=twin.device, in_sync=twin.in_sync, desired_version=twin.desired_version,
                              reported_version=twin.reported_version)
