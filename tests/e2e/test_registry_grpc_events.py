"""The registry end to end over gRPC and NATS: every device create publishes its event on JetStream."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import nats
import pytest
from helpers import PlatformLike, TenantTokens, service_nats_url
from nats.errors import TimeoutError as NatsTimeoutError

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from muster.runtime.bus import EVENTS_STREAM

from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import create_device
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import sites as sites  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

pytestmark = pytest.mark.platform


async def test_every_device_create_publishes_device_created_with_its_event_id_as_msg_id(
        platform: PlatformLike, devices: Devices, tenant: TenantTokens) -> None:
    created = {(await create_device(devices, tenant.operator, serial=f"EV-{i}")).name for i in range(3)}
    nc = await nats.connect(service_nats_url(platform))
    try:
        js = nc.jetstream()
        subject = f"muster.events.registry.{tenant.id}.DeviceCreated"
        sub = await js.pull_subscribe(subject, durable=None, stream=EVENTS_STREAM)
        events: list[Event] = []
        deadline = time.monotonic() + 15
        while len(events) < len(created) and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(10, timeout=1.0)
            except NatsTimeoutError:
                continue
            for msg in msgs:
                event = Event.FromString(msg.data)
                assert msg.subject == subject
                assert msg.headers is not None and msg.headers.get("Nats-Msg-Id") == event.id
                events.append(event)
                await msg.ack()
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert len(events) == len(created), f"got {len(events)} DeviceCreated events for {len(created)} creates"
    names = set()
    for event in events:
        assert (event.type, event.tenant, event.source) == ("DeviceCreated", tenant.id, "registry")
        payload = ev.DeviceCreated()
        assert event.payload.Unpack(payload)
        assert event.subject == payload.device.name
        names.add(payload.device.name)
    assert names == created
    assert len({e.id for e in events}) == len(events)
