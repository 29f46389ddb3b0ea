"""The twin's projection of the registry, fed by its events (a durable, idempotent `EventConsumer`):
a twin per device, created when the registry announces the device (or, for a device older than the
event stream's retention, at its next update), removed with a tombstone when the device is deleted, so
a late event from before the deletion never brings it back. Events of one device are serialised by a
transaction-level advisory lock. The connectivity and health slices read device -> tenant from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from muster.runtime.device_projection import newest_alive
from services.twin.repository import TwinRepository
from services.twin.twin import new_twin

DURABLE = "twin-registry-projection"
EVENT_TYPES = ("DeviceCreated", "DeviceUpdated", "DeviceStateChanged", "DeviceDeleted")
FILTER_SUBJECTS = tuple(f"muster.events.registry.*.{t}" for t in EVENT_TYPES)

_PAYLOADS: dict[str, type[ev.DeviceCreated] | type[ev.DeviceUpdated] | type[ev.DeviceStateChanged]] = {
    "DeviceCreated": ev.DeviceCreated, "DeviceUpdated": ev.DeviceUpdated, "DeviceStateChanged": ev.DeviceStateChanged}


def _unpack(event: Event, message: Message) -> None:
    if not event.payload.Unpack(message):
        raise ValueError(f"event {event.id}: payload is not {message.DESCRIPTOR.full_name}")


BATCHED = frozenset(_PAYLOADS)
"""Applied per fetched batch (`apply_device_events`): each only makes sure a twin exists, so they
commute with each other and with the deletions of the batch (tombstones decide)."""


def _device_id(event: Event) -> str:
    payload = _PAYLOADS[event.type]()
    _unpack(event, payload)
    return payload.device.name.rsplit("/", 1)[-1]


async def apply_device_events(events: Sequence[Event], conn: AsyncConnection) -> None:
    """The set-based `BatchApply` of BATCHED: the rules of `apply_event` for a whole batch in three
    statements (locks, tombstones, one insert) instead of several per event."""
    repo = TwinRepository(conn)
    candidates: list[tuple[datetime, dict[str, Any]]] = []
    for event in events:
        device_id, at = _device_id(event), event.time.ToDatetime(tzinfo=UTC)
        if event.tenant and device_id:
            candidates.append((at, {"device_id": device_id, "tenant_id": event.tenant, "create_time": at}))
    deleted = await repo.lock_many([row["device_id"] for _, row in candidates])
    rows = newest_alive(candidates, deleted, time_column="create_time")
    await repo.create_many([new_twin(row["tenant_id"], row["device_id"], row["create_time"]) for row in rows])


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler: runs in the consumer's transaction, platform scope."""
    repo, at = TwinRepository(conn), event.time.ToDatetime(tzinfo=UTC)
    if event.type == "DeviceDeleted":
        deleted = ev.DeviceDeleted()
        _unpack(event, deleted)
        await repo.bury(deleted.name.rsplit("/", 1)[-1], at)
        return
    kind = _PAYLOADS.get(event.type)
    if kind is None:
        return
    payload = kind()
    _unpack(event, payload)
    device_id = payload.device.name.rsplit("/", 1)[-1]
    if not event.tenant or not device_id or not await repo.alive(device_id, at):
        return
    await repo.create(new_twin(event.tenant, device_id, at))
