"""Ingest's projection and latest-value notifier against the real PostgreSQL, as ingest's own role:
a device event applied after the device's deletion does not bring it back (tombstone, ordered by
event time); changed latest values leave in coalesced LatestTelemetryChanged outbox events, marked so
an unchanged value is not sent again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message
from sqlalchemy import select

from muster.events.v1.event_pb2 import Event
from muster.ingest.v1 import events_pb2 as iev
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import template_resources_pb2 as tpb
from muster.runtime.db import Database, Scope
from muster.runtime.events import new_event
from services.ingest.latest_notifier import LatestNotifier
from services.ingest.projection import apply_event
from services.ingest.store import TelemetryStore
from services.ingest.tables import infrastructure, registry_devices, registry_modules, registry_tombstones

from .test_ingest_store import db as db  # fixture
from .test_ingest_store import pool as pool  # fixture
from .test_ingest_store import rows

pytestmark = pytest.mark.platform

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def registry_event(payload: Message, tenant: str, at: datetime) -> Event:
    return new_event(payload, source="registry", tenant=tenant, subject="devices/x", time=at)


def device_payload(kind: type[Message], device: str, updated: datetime) -> Message:
    proto = pb.Device(name=f"devices/{device}", state=pb.DEVICE_STATE_ACTIVE)
    proto.update_time.FromDatetime(updated)
    return kind(device=proto)


async def apply(db: Database, event: Event) -> None:
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_event(event, conn)


async def projected(db: Database, device: str) -> tuple[bool, int, datetime | None]:
    async with db.transaction(Scope.platform_wide()) as conn:
        present = (await conn.execute(select(registry_devices.c.device_id).where(
            registry_devices.c.device_id == device))).first() is not None
        modules = len((await conn.execute(select(registry_modules.c.module_id).where(
            registry_modules.c.device_id == device))).all())
        tomb = (await conn.execute(select(registry_tombstones.c.deleted_at).where(
            registry_tombstones.c.device_id == device))).scalar_one_or_none()
    return present, modules, tomb


async def test_events_from_before_a_deletion_do_not_bring_the_device_back(db: Database) -> None:
    device, tenant = uuid.uuid4().hex[:20], "tenant-a"
    t = [T0 + timedelta(seconds=s) for s in range(5)]
    await apply(db, registry_event(device_payload(ev.DeviceCreated, device, t[0]), tenant, t[0]))
    await apply(db, registry_event(ev.DeviceDeleted(name=f"devices/{device}"), tenant, t[2]))
    assert await projected(db, device) == (False, 0, t[2])

    # a replica or a redelivery applies older events after the deletion
    await apply(db, registry_event(device_payload(ev.DeviceUpdated, device, t[1]), tenant, t[1]))
    await apply(db, registry_event(device_payload(ev.DeviceCreated, device, t[0]), tenant, t[0]))
    module = tpb.Module(name=f"devices/{device}/modules/m1", metric_key_map={"a": "b"})
    module.update_time.FromDatetime(t[1])
    await apply(db, registry_event(ev.ModuleAssigned(module=module), tenant, t[1]))
    await apply(db, registry_event(ev.DeviceDeleted(name=f"devices/{device}"), tenant, t[1]))  # older deletion
    assert await projected(db, device) == (False, 0, t[2])

    # ordered by event time, like the edge: an event newer than the deletion applies
    await apply(db, registry_event(device_payload(ev.DeviceUpdated, device, t[3]), tenant, t[3]))
    assert await projected(db, device) == (True, 0, t[2])


async def outbox_payloads(db: Database, tenant: str) -> list[iev.LatestTelemetryChanged]:
    outbox = infrastructure.outbox
    async with db.transaction(Scope.platform_wide()) as conn:
        found = (await conn.execute(select(outbox.c.payload).where(
            outbox.c.tenant_id == tenant, outbox.c.type == "LatestTelemetryChanged").order_by(outbox.c.seq))).all()
    payloads = []
    for (raw,) in found:
        payload = iev.LatestTelemetryChanged()
        assert Event.FromString(raw).payload.Unpack(payload)
        payloads.append(payload)
    return payloads


async def test_many_writes_become_one_notification_with_the_newest_value(db: Database, pool: object) -> None:
    store, device, tenant = TelemetryStore(pool), uuid.uuid4().hex[:20], f"lt-{uuid.uuid4().hex[:8]}"
    notifier = LatestNotifier(db, infrastructure, interval=3600, claim_limit=100_000, published=asyncio.Event())
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    for batch in range(10):  # 10 batches of one message each, like a device sending 10 msg/s
        await store.write(rows(device, range(batch, batch + 1), now, tenant=tenant))
    await notifier.flush()
    payloads = await outbox_payloads(db, tenant)
    # the running platform's own notifier may have flushed once in between: never one event per write
    assert 1 <= len(payloads) <= 2
    readings = [r for p in payloads for d in p.devices if d.device == f"devices/{device}" for r in d.readings]
    assert len(readings) == len(payloads)
    newest = max(readings, key=lambda r: r.time.ToDatetime(tzinfo=UTC))
    assert (newest.metric, newest.value.number_value) == ("temp", 9.0)
    assert newest.time.ToDatetime(tzinfo=UTC) == now + timedelta(seconds=9)

    await notifier.flush()  # nothing changed since: nothing is sent again
    assert len(await outbox_payloads(db, tenant)) == len(payloads)

    await store.write(rows(device, range(20, 21), now, tenant=tenant))
    await notifier.flush()
    latest = (await outbox_payloads(db, tenant))[-1]
    assert [(d.device, [r.value.number_value for r in d.readings]) for d in latest.devices] == [
        (f"devices/{device}", [20.0])]
