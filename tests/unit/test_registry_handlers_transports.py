"""Device transports through the device use cases over the in-memory unit of work: set on create,
replaced with update_mask "transports", carried in the events, a bad ICCID refused naming its field
with nothing written, and a SIM in one device at a time within a tenant."""

from __future__ import annotations

import pytest
from fakes.registry import FakeRegistryStore

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.errors import AlreadyExists, InvalidArgument
from services.registry import commands as cmd
from services.registry.handlers import RegistryHandlers
from services.registry.transports import Cellular, Ethernet, Protocol, Transport

from .registry_handlers_support import ADMIN_B, OPERATOR_A, make_device, snapshot
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

SIM = "89014103211118510720"
LTE = Transport(Protocol.MQTT, Cellular(iccid=SIM, imei="490154203237518", apn="iot.example.com", carrier="Acme"))
WIRED = Transport(Protocol.MODBUS_TCP, Ethernet("00:1a:2b:3c:4d:5e"))


async def test_transports_set_on_create_and_replaced_on_update(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h, transports=(LTE,))
    assert store.state.devices[device.id].transports == (LTE,)
    created = ev.DeviceCreated()
    assert store.events_of_type("DeviceCreated")[0].payload.Unpack(created)
    assert created.device.transports[0].cellular.iccid == SIM

    updated = await h.update_device(OPERATOR_A, cmd.Update(id=device.id, mask=frozenset({"transports"}),
                                                           values={"transports": (WIRED, LTE)}, etag='"1"'))
    assert updated.transports == (WIRED, LTE) and updated.version == 2
    payload = ev.DeviceUpdated()
    assert store.events_of_type("DeviceUpdated")[0].payload.Unpack(payload)
    assert list(payload.update_mask.paths) == ["transports"]
    assert [t.WhichOneof("link") for t in payload.device.transports] == ["ethernet", "cellular"]


async def test_a_bad_iccid_is_refused_naming_its_path_and_nothing_is_written(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h)
    before = snapshot(store)
    bad = Transport(Protocol.MQTT, Cellular(iccid=SIM[:-1] + "1"))
    with pytest.raises(InvalidArgument) as caught:
        await h.update_device(OPERATOR_A, cmd.Update(id=device.id, mask=frozenset({"transports"}),
                                                     values={"transports": (WIRED, bad)}))
    assert [v.field for v in caught.value.violations] == ["device.transports[1].cellular.iccid"]
    with pytest.raises(InvalidArgument):
        await make_device(h, transports=(bad,))
    assert snapshot(store) == before


async def test_a_sim_is_in_one_device_at_a_time_per_tenant(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    first = await make_device(h, transports=(LTE,))
    before = snapshot(store)
    with pytest.raises(AlreadyExists) as caught:
        await make_device(h, transports=(LTE,))
    assert caught.value.reason == "ICCID_IN_USE"
    assert snapshot(store) == before
    # Moving the SIM: take it out of the first device, then the second may have it.
    await h.update_device(OPERATOR_A, cmd.Update(id=first.id, mask=frozenset({"transports"}),
                                                 values={"transports": ()}))
    second = await make_device(h, transports=(LTE,))
    assert second.transports == (LTE,)
    # Another tenant is another namespace (its SIM records are its own business).
    assert (await make_device(h, ADMIN_B, transports=(LTE,))).transports == (LTE,)
