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

from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import template_resources_pb2 as tpb
from services.ingest.tables import registry_devices, registry_modules, registry_templates, registry_tombstones

DURABLE = "ingest-registry-projection"
EVENT_TYPES = ("DeviceCreated", "DeviceUpdated", "DeviceStateChanged", "DeviceDeleted", "TemplateCreated",
               "TemplateUpdated", "TemplateDeleted", "ModuleAssigned", "ModuleUpdated", "ModuleRemoved")
FILTER_SUBJECTS = tuple(f"muster.events.registry.*.{t}" for t in EVENT_TYPES)


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


async def _upsert(conn: AsyncConnection, table: Any, keys: list[str], values: dict[str, Any]) -> None:
    statement = pg_insert(table).values(**values)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=keys, set_={k: statement.excluded[k] for k in values if k not in keys},
        where=table.c.update_time <= statement.excluded.update_time))


async def _lock_device(conn: AsyncConnection, device_id: str) -> None:
    """Serialise this transaction with every other one applying an event of the same device."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("ingest.device:" + device_id, 0))))


async def _buried(conn: AsyncConnection, device_id: str, at: datetime) -> bool:
    """Whether the device was deleted by an event no older than `at` (so an event at `at` is stale)."""
    deleted_at = (await conn.execute(select(registry_tombstones.c.deleted_at).where(
        registry_tombstones.c.device_id == device_id))).scalar_one_or_none()
    return deleted_at is not None and deleted_at >= at


async def bury(conn: AsyncConnection, device_id: str, at: datetime) -> None:
    """Forget the device and its modules; keep the newest deletion time as its tombstone."""
    await _lock_device(conn, device_id)
    await conn.execute(delete(registry_modules).where(registry_modules.c.device_id == device_id))
    await conn.execute(delete(registry_devices).where(registry_devices.c.device_id == device_id))
    statement = pg_insert(registry_tombstones).values(device_id=device_id, deleted_at=at)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["device_id"], set_={"deleted_at": func.greatest(
            registry_tombstones.c.deleted_at, statement.excluded.deleted_at)}))


async def _alive(conn: AsyncConnection, event: Event, device_id: str) -> bool:
    await _lock_device(conn, device_id)
    return not await _buried(conn, device_id, event.time.ToDatetime(tzinfo=UTC))


async def _device(conn: AsyncConnection, event: Event, device: pb.Device) -> None:
    if not await _alive(conn, event, _last(device.name)):
        return
    await _upsert(conn, registry_devices, ["device_id"], {
        "device_id": _last(device.name), "tenant_id": event.tenant, "template_id": _ref(device.template),
        "state": int(device.state), "update_time": device.update_time.ToDatetime(tzinfo=UTC)})


async def _template(conn: AsyncConnection, event: Event, template: tpb.DeviceTemplate) -> None:
    await _upsert(conn, registry_templates, ["template_id"], {
        "template_id": _last(template.name), "tenant_id": event.tenant, "metrics": template_metrics(template),
        "update_time": template.update_time.ToDatetime(tzinfo=UTC)})


async def _module(conn: AsyncConnection, event: Event, module: tpb.Module) -> None:
    parts = module.name.split("/")  # devices/{device}/modules/{module}
    if not await _alive(conn, event, parts[1]):
        return
    await _upsert(conn, registry_modules, ["device_id", "module_id"], {
        "device_id": parts[1], "module_id": parts[3], "template_id": _ref(module.template),
        "metric_key_map": dict(module.metric_key_map),
        "update_time": module.update_time.ToDatetime(tzinfo=UTC)})


def _unpack(event: Event, message: Message) -> Message:
    if not event.payload.Unpack(message):
        raise ValueError(f"event {event.id}: payload is not {message.DESCRIPTOR.full_name}")
    return message


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler: runs in the consumer's transaction, platform scope."""
    kind = event.type
    if kind in ("DeviceCreated", "DeviceUpdated", "DeviceStateChanged"):
        payload = {"DeviceCreated": ev.DeviceCreated, "DeviceUpdated": ev.DeviceUpdated,
                   "DeviceStateChanged": ev.DeviceStateChanged}[kind]()
        _unpack(event, payload)
        await _device(conn, event, payload.device)
    elif kind == "DeviceDeleted":
        deleted = ev.DeviceDeleted()
        _unpack(event, deleted)
        await bury(conn, _last(deleted.name), event.time.ToDatetime(tzinfo=UTC))
    elif kind in ("TemplateCreated", "TemplateUpdated"):
        tpayload = ev.TemplateCreated() if kind == "TemplateCreated" else ev.TemplateUpdated()
        _unpack(event, tpayload)
        await _template(conn, event, tpayload.template)
    elif kind == "TemplateDeleted":
        tdeleted = ev.TemplateDeleted()
        _unpack(event, tdeleted)
        await conn.execute(delete(registry_templates).where(
            registry_templates.c.template_id == _last(tdeleted.name)))
    elif kind in ("ModuleAssigned", "ModuleUpdated"):
        mpayload = ev.ModuleAssigned() if kind == "ModuleAssigned" else ev.ModuleUpdated()
        _unpack(event, mpayload)
        await _module(conn, event, mpayload.module)
    elif kind == "ModuleRemoved":
        mremoved = ev.ModuleRemoved()
        _unpack(event, mremoved)
        parts = mremoved.name.split("/")
        await conn.execute(delete(registry_modules).where(
            registry_modules.c.device_id == parts[1], registry_modules.c.module_id == parts[3]))
