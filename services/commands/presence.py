"""The commands context's projection of device presence, fed by twin's `DevicePresenceChanged`
events (a durable, idempotent `EventConsumer`): whether a device is connected decides whether a
command is sent now or waits.

A presence only moves forward in its `since` time (a late or redelivered event changes nothing).
When a device becomes connected, its waiting (PENDING) commands are made due now, in the same
transaction: the timer worker of whichever replica hears the commit's notification sends them,
oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.twin.v1 import events_pb2 as twin
from services.commands.delivery_repository import CONNECTED, DeliveryRepository

DURABLE = "commands-presence"
FILTER_SUBJECTS = ("muster.events.twin.*.DevicePresenceChanged",)


def _now() -> datetime:
    return datetime.now(UTC)


async def apply_event(event: Event, conn: AsyncConnection) -> None:
    """The `EventConsumer` handler: runs in the consumer's transaction, platform scope."""
    changed = twin.DevicePresenceChanged()
    if not event.payload.Unpack(changed):
        raise ValueError(f"event {event.id}: payload is not {changed.DESCRIPTOR.full_name}")
    device_id = changed.device.rsplit("/", 1)[-1]
    since = changed.since.ToDatetime(tzinfo=UTC) if changed.HasField("since") else event.time.ToDatetime(tzinfo=UTC)
    repo = DeliveryRepository(conn)
    stored = await repo.record_presence(tenant_id=event.tenant, device_id=device_id, presence=int(changed.presence),
                                        since=since, session_id=changed.session_id)
    if stored and changed.presence in CONNECTED:
        await repo.due_now(device_id, _now())
