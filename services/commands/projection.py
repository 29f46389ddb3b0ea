"""The commands context's projection of the registry, fed by its events (a durable, idempotent
`EventConsumer`, the pattern of `services/ingest/projection.py`): device -> tenant, lifecycle state and
template; templates' command definitions (name, parameter schema, default timeout), which
CreateCommand validates against. Upserts only move forward in `update_time`; a deleted device leaves a
tombstone stamped with the deletion's event time, so an older event applied late does not bring it
back; events of one device are serialised by a transaction-level advisory lock (the rules of
`muster.runtime.device_projection`). A deleted, suspended or retired device has its unfinished commands
canceled in the event's transaction (`device_lifecycle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.device_projection import newest_alive
from muster.runtime.events import new_event
from services.commands.device_lifecycle import DEVICE_DELETED, withdraw_commands, withdrawal_reason
from services.commands.projection_repository import ProjectionRepository
from services.commands.repository import CommandRepository
from services.commands.tables import infrastructure
from services.commands.unit_of_work import SOURCE

DURABLE = "commands-registry-projection"
EVENT_TYPES = ("DeviceCreated", "DeviceUpdated", "DeviceStateChanged", "DeviceDeleted", "TemplateCreated",
               "TemplateUpdated", "TemplateDeleted")
FILTER_SUBJECTS = tuple(f"muster.events.registry.*.{t}" for t in EVENT_TYPES)


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def template_commands(template: tpb.DeviceTemplate) -> dict[str, dict[str, Any]]:
    """The definitions as the projection stores them (JSON)."""
    found: dict[str, dict[str, Any]] = {}
    for definition in template.commands:
        timeout = definition.default_timeout.ToTimedelta().total_seconds() \
            if definition.HasField("default_timeout") else None
        found[definition.name] = {"parameters": MessageToDict(definition.parameters),
                                  "default_timeout_seconds": timeout}
    return found


def _unpack(event: Event, message: Message) -> Any:
    if not event.payload.Unpack(message):
        raise ValueError(f"event {event.id}: payload is not {message.DESCRIPTOR.full_name}")
    return message


class _Outbox:
    """The events of a consumer's transaction (an `Emitter`), written to the outbox with its changes."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, payload: Message, *, subject: str, tenant: str | None = None) -> Event:
        event = new_event(payload, source=SOURCE, tenant=tenant, subject=subject)
        self.events.append(event)
        return event


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _withdraw(conn: AsyncConnection, tenant_id: str, device_id: str, reason: str, now: datetime) -> None:
    outbox = _Outbox()
    await withdraw_commands(CommandRepository(conn), outbox, tenant_id=tenant_id, device_id=device_id,
                            reason=reason, now=now)
    await infrastructure.append(conn, outbox.events)


BATCHED = frozenset({"DeviceCreated"})
"""Applied per fetched batch (`apply_created_devices`): a new device has no commands to cancel, so its
creation commutes with everything else of the batch."""


def _device_row(event: Event, device: pb.Device) -> dict[str, Any]:
    return {"device_id": _last(device.name), "tenant_id": event.tenant,
            "template_id": _last(device.template) if device.template else None, "state": int(device.state),
            "update_time": device.update_time.ToDatetime(tzinfo=UTC)}


async def apply_created_devices(events: Sequence[Event], conn: AsyncConnection) -> None:
    """The set-based `BatchApply` of BATCHED: the rules of `apply_event` for a whole batch in three
    statements (locks, tombstones, one upsert) instead of several per event."""
    repo = ProjectionRepository(conn)
    devices = [(event, _unpack(event, ev.DeviceCreated()).device) for event in events]
    deleted = await repo.lock_many([_last(device.name) for _, device in devices])
    await repo.upsert_devices(newest_alive(
        ((event.time.ToDatetime(tzinfo=UTC), _device_row(event, device)) for event, device in devices), deleted))


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler: runs in the consumer's transaction, platform scope. A device that
    is deleted, or whose newest state is suspended or retired, has its unfinished commands canceled
    in the same transaction (`device_lifecycle`)."""
    repo, kind, at = ProjectionRepository(conn), event.type, event.time.ToDatetime(tzinfo=UTC)
    if kind in ("DeviceCreated", "DeviceUpdated", "DeviceStateChanged"):
        payload = {"DeviceCreated": ev.DeviceCreated, "DeviceUpdated": ev.DeviceUpdated,
                   "DeviceStateChanged": ev.DeviceStateChanged}[kind]()
        device = _unpack(event, payload).device
        device_id = _last(device.name)
        if not await repo.alive(device_id, at):
            return
        written = await repo.upsert_device(_device_row(event, device))
        reason = withdrawal_reason(int(device.state))
        if written and reason is not None:  # its newest state: a late suspension cancels nothing
            await _withdraw(conn, event.tenant, device_id, reason, _utcnow())
    elif kind == "DeviceDeleted":
        device_id = _last(_unpack(event, ev.DeviceDeleted()).name)
        await repo.bury(device_id, at)
        await _withdraw(conn, event.tenant, device_id, DEVICE_DELETED, _utcnow())
    elif kind in ("TemplateCreated", "TemplateUpdated"):
        template = _unpack(event, ev.TemplateCreated() if kind == "TemplateCreated" else ev.TemplateUpdated()).template
        await repo.upsert_template({
            "template_id": _last(template.name), "tenant_id": event.tenant, "commands": template_commands(template),
            "update_time": template.update_time.ToDatetime(tzinfo=UTC)})
    elif kind == "TemplateDeleted":
        await repo.delete_template(_last(_unpack(event, ev.TemplateDeleted()).name))
