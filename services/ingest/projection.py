"""Ingest's projection of the registry, fed by the registry's events (a durable, idempotent
`EventConsumer`): device -> tenant, template and lifecycle state; templates' metric definitions;
modules' `metric_key_map`. Upserts only move forward in `update_time`, so a redelivered or late
event never overwrites a newer state. Deleting a device forgets it (its telemetry is then refused) and
leaves a tombstone stamped with the deletion's event time (as the edge's projection does): a device or
module event of that device from before the deletion, applied after it (replicas, redelivery), is
dropped instead of bringing the device back. Events of one device are serialised by a transaction-level
advisory lock, so two replicas cannot interleave a deletion with a late upsert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.device_projection import newest_alive
from services.ingest.projection_repository import ProjectionRepository

DURABLE = "ingest-registry-projection"
EVENT_TYPES = ("DeviceCreated", "DeviceUpdated", "DeviceStateChanged", "DeviceDeleted", "TemplateCreated",
               "TemplateUpdated", "TemplateDeleted", "ModuleAssigned", "ModuleUpdated", "ModuleRemoved")
FILTER_SUBJECTS = tuple(f"muster.events.registry.*.{t}" for t in EVENT_TYPES)
_DEVICE_PAYLOADS: dict[str, type[ev.DeviceCreated | ev.DeviceUpdated | ev.DeviceStateChanged]] = {
    "DeviceCreated": ev.DeviceCreated, "DeviceUpdated": ev.DeviceUpdated, "DeviceStateChanged": ev.DeviceStateChanged}
DEVICE_UPSERTS = frozenset(_DEVICE_PAYLOADS)
"""Event types that only upsert a device forward in time: they commute, so they are applied per batch."""


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _ref(name: str) -> str | None:
    return _last(name) if name else None


def template_metrics(template: tpb.DeviceTemplate) -> dict[str, dict[str, Any]]:
    metrics: dict[str, dict[str, Any]] = {}
    for metric in template.metrics:
        spec: dict[str, Any] = {"type": int(metric.type)}
        if metric.HasField("min"):
            spec["min"] = metric.min
        if metric.HasField("max"):
            spec["max"] = metric.max
        metrics[metric.key] = spec
    return metrics


def _device_row(event: Event, device: pb.Device) -> dict[str, Any]:
    return {"device_id": _last(device.name), "tenant_id": event.tenant, "template_id": _ref(device.template),
            "state": int(device.state), "update_time": device.update_time.ToDatetime(tzinfo=UTC)}


async def _device(repo: ProjectionRepository, event: Event, device: pb.Device) -> None:
    if not await repo.alive(_last(device.name), event.time.ToDatetime(tzinfo=UTC)):
        return
    await repo.upsert_device(_device_row(event, device))


def _device_of(event: Event) -> pb.Device:
    payload = _DEVICE_PAYLOADS[event.type]()
    _unpack(event, payload)
    return payload.device


async def apply_device_events(events: Sequence[Event], conn: AsyncConnection) -> None:
    """The set-based `BatchApply` of DEVICE_UPSERTS: the rules of `_device` for a whole batch, in a
    few statements (locks, tombstones, one upsert) instead of several per event."""
    repo = ProjectionRepository(conn)
    devices = [(event, _device_of(event)) for event in events]
    deleted = await repo.lock_many([_last(device.name) for _, device in devices])
    await repo.upsert_devices(newest_alive(
        ((event.time.ToDatetime(tzinfo=UTC), _device_row(event, device)) for event, device in devices), deleted))


async def _template(repo: ProjectionRepository, event: Event, template: tpb.DeviceTemplate) -> None:
    await repo.upsert_template({
        "template_id": _last(template.name), "tenant_id": event.tenant, "metrics": template_metrics(template),
        "update_time": template.update_time.ToDatetime(tzinfo=UTC)})


async def _module(repo: ProjectionRepository, event: Event, module: tpb.Module) -> None:
    parts = module.name.split("/")  # devices/{device}/modules/{module}
    if not await repo.alive(parts[1], event.time.ToDatetime(tzinfo=UTC)):
        return
    await repo.upsert_module({
        "device_id": parts[1], "module_id": parts[3], "template_id": _ref(module.template),
        "metric_key_map": dict(module.metric_key_map),
        "update_time": module.update_time.ToDatetime(tzinfo=UTC)})


def _unpack(event: Event, message: Message) -> Message:
    if not event.payload.Unpack(message):
        raise ValueError(f"event {event.id}: payload is not {message.DESCRIPTOR.full_name}")
    return message


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler: runs in the consumer's transaction, platform scope."""
    repo, kind = ProjectionRepository(conn), event.type
    if kind in DEVICE_UPSERTS:
        await _device(repo, event, _device_of(event))
    elif kind == "DeviceDeleted":
        deleted = ev.DeviceDeleted()
        _unpack(event, deleted)
        await repo.bury(_last(deleted.name), event.time.ToDatetime(tzinfo=UTC))
    elif kind in ("TemplateCreated", "TemplateUpdated"):
        tpayload = ev.TemplateCreated() if kind == "TemplateCreated" else ev.TemplateUpdated()
        _unpack(event, tpayload)
        await _template(repo, event, tpayload.template)
    elif kind == "TemplateDeleted":
        tdeleted = ev.TemplateDeleted()
        _unpack(event, tdeleted)
        await repo.delete_template(_last(tdeleted.name))
    elif kind in ("ModuleAssigned", "ModuleUpdated"):
        mpayload = ev.ModuleAssigned() if kind == "ModuleAssigned" else ev.ModuleUpdated()
        _unpack(event, mpayload)
        await _module(repo, event, mpayload.module)
    elif kind == "ModuleRemoved":
        mremoved = ev.ModuleRemoved()
        _unpack(event, mremoved)
        parts = mremoved.name.split("/")
        await repo.delete_module(parts[1], parts[3])
