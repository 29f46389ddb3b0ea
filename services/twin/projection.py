"""The twin's projection of the registry, fed by its events (a durable, idempotent `EventConsumer`):
a twin per device, created when the registry announces the device (or, for a device older than the
event stream's retention, at its next update), removed with a tombstone when the device is deleted, so
a late event from before the deletion never brings it back. Events of one device are serialised by a
transaction-level advisory lock. The connectivity and health slices read device -> tenant from here.
"""

from __future__ import annotations

from datetime import UTC

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
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
