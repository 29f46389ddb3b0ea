"""The edge's projection of the registry, fed by its events (durable, idempotent `EventConsumer`):
device -> tenant, lifecycle, valid secret hashes. Events that end a device's right to be connected
(suspended, retired, deleted, credentials revoked) also kick its recorded connections, inside the
same transaction: if a kick cannot be sent the transaction rolls back and the event is redelivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from services.ingest.edge import repository as repo
from services.ingest.edge.authorization import CONNECTABLE_STATES, SecretHash
from services.ingest.edge.kicker import Kicker
from services.ingest.edge.metrics import EdgeMetrics

log = structlog.get_logger(__name__)

EVENT_TYPES = ("DeviceCreated", "DeviceStateChanged", "DeviceDeleted", "DeviceCredentialsChanged")
BATCHED = frozenset({"DeviceCreated"})
"""Applied per batch by `apply_created` (forward-only, never kicks); the rest one by one."""
SUBJECTS = tuple(f"muster.events.registry.*.{name}" for name in EVENT_TYPES)
DURABLE = "ingest-edge-credentials"


def device_id(name: str) -> str:
    """`devices/{id}` -> `{id}` (events carry resource names)."""
    return name.removeprefix("devices/")


class CredentialsProjection:
    def __init__(self, kicker: Kicker, metrics: EdgeMetrics) -> None:
        self._kicker = kicker
        self._metrics = metrics

    async def apply(self, event: Event, conn: AsyncConnection) -> None:
        """The EventConsumer handler: one registry event, in the consumer's transaction."""
        at = event.time.ToDatetime(tzinfo=UTC)
        if event.type == "DeviceCreated":
            created = ev.DeviceCreated()
            event.payload.Unpack(created)
            await repo.apply_lifecycle(conn, device_id=device_id(created.device.name), tenant_id=event.tenant,
                                       state=created.device.state, deleted=False, at=at)
        elif event.type == "DeviceStateChanged":
            changed = ev.DeviceStateChanged()
            event.payload.Unpack(changed)
            device = device_id(changed.device.name)
            applied = await repo.apply_lifecycle(conn, device_id=device, tenant_id=event.tenant,
                                                 state=changed.device.state, deleted=False, at=at)
            if applied and changed.device.state not in CONNECTABLE_STATES:
                await self._cut(conn, device, reason="state")
        elif event.type == "DeviceDeleted":
            deleted = ev.DeviceDeleted()
            event.payload.Unpack(deleted)
            device = device_id(deleted.name)
            if await repo.apply_lifecycle(conn, device_id=device, tenant_id=event.tenant, state=None,
                                          deleted=True, at=at):
                await self._cut(conn, device, reason="deleted")
        elif event.type == "DeviceCredentialsChanged":
            await self._credentials(event, conn, at)
        else:
            return
        self._metrics.events.labels(type=event.type).inc()

    async def apply_created(self, events: Sequence[Event], conn: AsyncConnection) -> None:
        """The set-based `BatchApply` of DeviceCreated (a batch of registrations or an import): one
        forward-only upsert; a created device is never cut, so nothing is kicked."""
        newest: dict[str, tuple[str, str, int, datetime]] = {}
        for event in events:
            created = ev.DeviceCreated()
            if not event.payload.Unpack(created):
                raise ValueError(f"event {event.id}: payload is not DeviceCreated")
            row = (device_id(created.device.name), event.tenant, int(created.device.state),
                   event.time.ToDatetime(tzinfo=UTC))
            if row[0] not in newest or newest[row[0]][3] <= row[3]:
                newest[row[0]] = row
        await repo.apply_lifecycles(conn, list(newest.values()))
        self._metrics.events.labels(type="DeviceCreated").inc(len(events))

    async def _credentials(self, event: Event, conn: AsyncConnection, at: datetime) -> None:
        changed = ev.DeviceCredentialsChanged()
        event.payload.Unpack(changed)
        device = device_id(changed.device)
        secrets = [SecretHash(s.hmac_sha256, s.expire_time.ToDatetime(tzinfo=UTC) if s.HasField("expire_time")
                              else None) for s in changed.secrets]
        applied = await repo.apply_credentials(conn, device_id=device, tenant_id=event.tenant, secrets=secrets, at=at)
        if applied and changed.revoke_sessions:
            await self._cut(conn, device, reason="credentials_revoked")

    async def _cut(self, conn: AsyncConnection, device: str, *, reason: str) -> None:
        connections = await repo.take_connections(conn, device)
        await self._kicker.kick_all(connections, reason)
