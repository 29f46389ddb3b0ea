"""The set-based paths of ingest's and the edge's registry projections, on the real PostgreSQL as
ingest's own role: a batch gives the same result as applying its events one by one (tombstones,
forward-only update times, several events of one device in the same batch)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.db import Database, Scope
from services.ingest.edge import repository as edge_repo
from services.ingest.edge.kicker import Kicker
from services.ingest.edge.metrics import EdgeMetrics
from services.ingest.edge.projection import CredentialsProjection
from services.ingest.projection import apply_device_events
from services.ingest.tables import edge_devices, registry_devices

from .test_ingest_store import db as db  # fixture
from .test_ingest_tombstones_and_notify import apply, device_payload, projected, registry_event

pytestmark = pytest.mark.platform

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _update_time(db: Database, device: str) -> datetime | None:
    async with db.transaction(Scope.platform_wide()) as conn:
        return (await conn.execute(select(registry_devices.c.update_time).where(
            registry_devices.c.device_id == device))).scalar_one_or_none()


async def test_a_batch_of_device_events_follows_the_one_by_one_rules(db: Database) -> None:
    buried, kept, fresh = (uuid.uuid4().hex[:20] for _ in range(3))
    await apply(db, registry_event(ev.DeviceDeleted(name=f"devices/{buried}"), "tenant-a", _at(5)))
    await apply(db, registry_event(device_payload(ev.DeviceCreated, kept, _at(0)), "tenant-a", _at(0)))
    batch = [
        registry_event(device_payload(ev.DeviceCreated, buried, _at(1)), "tenant-a", _at(1)),  # before its deletion
        registry_event(device_payload(ev.DeviceUpdated, kept, _at(3)), "tenant-a", _at(3)),
        registry_event(device_payload(ev.DeviceStateChanged, kept, _at(2)), "tenant-a", _at(2)),  # late: ignored
        registry_event(device_payload(ev.DeviceCreated, fresh, _at(4)), "tenant-b", _at(4)),
    ]
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_device_events(batch, conn)
    assert await projected(db, buried) == (False, 0, _at(5))
    assert await _update_time(db, kept) == _at(3)
    assert await _update_time(db, fresh) == _at(4)

    # a whole batch older than what is projected changes nothing
    async with db.transaction(Scope.platform_wide()) as conn:
        await apply_device_events([registry_event(device_payload(ev.DeviceUpdated, kept, _at(1)), "tenant-a",
                                                  _at(1))], conn)
    assert await _update_time(db, kept) == _at(3)


async def test_the_edge_applies_a_batch_of_created_devices_forward_only(db: Database) -> None:
    new, deleted = uuid.uuid4().hex[:20], uuid.uuid4().hex[:20]
    async with db.transaction(Scope.platform_wide()) as conn:
        await edge_repo.apply_lifecycle(conn, device_id=deleted, tenant_id="tenant-a", state=None, deleted=True,
                                        at=_at(9))
    projection = CredentialsProjection(cast(Kicker, None), EdgeMetrics(CollectorRegistry()))  # created: no kicks
    provisioned = pb.DEVICE_STATE_PROVISIONED
    created = [registry_event(ev.DeviceCreated(device=pb.Device(name=f"devices/{d}", state=provisioned)),
                              "tenant-a", _at(1)) for d in (new, deleted)]
    async with db.transaction(Scope.platform_wide()) as conn:
        await projection.apply_created([*created, created[0]], conn)  # a device twice in one batch
    async with db.transaction(Scope.platform_wide()) as conn:
        rows = {r.device_id: r for r in await conn.execute(
            select(edge_devices).where(edge_devices.c.device_id.in_([new, deleted])))}
    assert (rows[new].tenant_id, rows[new].state, rows[new].deleted) == ("tenant-a", provisioned, False)
    assert rows[deleted].deleted and rows[deleted].state_time == _at(9)  # the later deletion stands
