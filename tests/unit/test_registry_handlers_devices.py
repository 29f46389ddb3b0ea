"""Registry device use cases over the in-memory unit of work: create, read, update, lifecycle, delete; what
each commits, emits, or refuses."""

from __future__ import annotations

import pytest
from fakes.registry import FakeClock, FakeRegistryStore

from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.registry import commands as cmd
from services.registry.domain import DeviceState, Location
from services.registry.handlers import RegistryHandlers
from services.registry.mapping import device_to_proto

from .registry_handlers_support import ADMIN_A, ADMIN_B, OPERATOR_A, PLATFORM, A, B, make_device, make_site, snapshot
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

# --- devices: create ---------------------------------------------------------------------------------

async def test_create_device_emits_device_created_in_the_same_unit_of_work_and_commits(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h, display_name="Pump 7", labels={"env": "prod"}, serial="SN-1")
    assert store.state.devices[device.id] == device
    assert (device.tenant_id, device.state, device.version) == (A, DeviceState.PROVISIONED, 1)
    (uow,) = [u for u in store.units if u.committed]
    (event,) = uow.emitted
    assert store.events == [event] and store.commits == 1
    assert (event.type, event.tenant, event.subject, event.source) == ("DeviceCreated", A, device.name, "registry")
    payload = ev.DeviceCreated()
    assert event.payload.Unpack(payload)
    assert payload.device == device_to_proto(device)


async def test_create_device_at_a_site_of_the_tenant(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await make_site(h)
    device = await make_device(h, site_id=site.id)
    assert store.state.devices[device.id].site_id == site.id


async def test_invalid_device_commits_nothing_and_emits_nothing(h: RegistryHandlers,
                                                                store: FakeRegistryStore) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await make_device(h, labels={"Bad Key": "v"}, location=Location(95.0, 0.0))
    assert [v.field for v in caught.value.violations] == ["device.labels.Bad Key", "device.location.latitude"]
    assert snapshot(store) == before


@pytest.mark.parametrize("site_owner", [None, B])
async def test_device_at_a_missing_or_foreign_site_is_refused_and_nothing_saved(
        h: RegistryHandlers, store: FakeRegistryStore, site_owner: str | None) -> None:
    if site_owner is not None:
        await make_site(h, ADMIN_B, "plant-b")  # exists, but in tenant B
    before = snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await make_device(h, site_id="plant-b")
    assert caught.value.violations[0].field == "device.site"
    assert snapshot(store) == before


async def test_duplicate_serial_in_a_tenant_is_refused_but_allowed_across_tenants(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await make_device(h, serial="SN-1")
    with pytest.raises(AlreadyExists):
        await make_device(h, serial="SN-1")
    await make_device(h, ADMIN_B, serial="SN-1")
    assert len(store.events_of_type("DeviceCreated")) == 2


async def test_platform_admin_token_cannot_act_inside_a_tenant(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    with pytest.raises(PermissionDenied) as caught:
        await make_device(h, PLATFORM)
    assert caught.value.reason == "TENANT_REQUIRED"
    assert store.units == [] and store.commits == 0


# --- devices: read, update, lifecycle, delete --------------------------------------------------------

async def test_device_of_another_tenant_is_not_found_and_the_message_leaks_nothing(h: RegistryHandlers) -> None:
    theirs = await make_device(h, ADMIN_B, display_name="Secret B pump", serial="B-SERIAL")
    for call in (h.get_device(ADMIN_A, theirs.id),
                 h.update_device(ADMIN_A, cmd.Update(theirs.id, frozenset({"display_name"}), {"display_name": "x"})),
                 h.delete_device(ADMIN_A, cmd.Delete(theirs.id)),
                 h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(theirs.id, DeviceState.ACTIVE))):
        with pytest.raises(NotFound) as caught:
            await call
        assert caught.value.message == f"devices/{theirs.id} not found"
        assert B not in caught.value.message and "Secret" not in caught.value.message
    assert (await h.get_device(ADMIN_B, theirs.id)) == theirs  # untouched


async def test_update_changes_only_masked_fields_and_emits_device_updated(
        h: RegistryHandlers, store: FakeRegistryStore, clock: FakeClock) -> None:
    device = await make_device(h, display_name="old", labels={"env": "dev"}, notes="keep")
    update = cmd.Update(device.id, frozenset({"display_name"}),
                        {"display_name": "new"}, etag='"1"')
    updated = await h.update_device(OPERATOR_A, update)
    assert (updated.display_name, dict(updated.labels), updated.notes) == ("new", {"env": "dev"}, "keep")
    assert updated.version == 2 and updated.update_time == clock.now and updated.create_time == device.create_time
    assert store.state.devices[device.id] == updated
    (event,) = store.events_of_type("DeviceUpdated")
    payload = ev.DeviceUpdated()
    event.payload.Unpack(payload)
    assert list(payload.update_mask.paths) == ["display_name"] and payload.device.etag == '"2"'


async def test_stale_etag_is_aborted_and_nothing_saved(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h, display_name="v1")
    await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"display_name"}), {"display_name": "v2"}))
    before = snapshot(store)
    with pytest.raises(Aborted) as caught:
        await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"display_name"}),
                                                     {"display_name": "v3"}, etag='"1"'))
    assert caught.value.reason == "ETAG_MISMATCH"
    assert snapshot(store) == before
    assert store.state.devices[device.id].display_name == "v2"


@pytest.mark.parametrize("write", ["delete", "retire"])
async def test_stale_etag_also_guards_delete_and_lifecycle(h: RegistryHandlers, store: FakeRegistryStore,
                                                           write: str) -> None:
    device = await make_device(h)
    await h.change_device_state(OPERATOR_A, cmd.ChangeDeviceState(device.id, DeviceState.ACTIVE))
    before = snapshot(store)
    with pytest.raises(Aborted):
        if write == "delete":
            await h.delete_device(ADMIN_A, cmd.Delete(device.id, etag='"1"'))
        else:
            await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device.id, DeviceState.RETIRED, etag='"1"'))
    assert snapshot(store) == before


async def test_update_validates_the_result_before_saving(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h)
    before = snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"labels"}), {"labels": {"UP": "x"}}))
    assert caught.value.violations[0].field == "device.labels.UP"
    with pytest.raises(InvalidArgument):
        await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"site"}), {"site": "nowhere"}))
    assert snapshot(store) == before


async def test_update_can_move_a_device_to_a_site_and_off_it_again(h: RegistryHandlers) -> None:
    site = await make_site(h)
    device = await make_device(h)
    moved = await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"site"}), {"site": site.id}))
    assert moved.site_id == site.id
    cleared = await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"site"}), {"site": None}))
    assert cleared.site_id is None


async def test_lifecycle_through_handlers_emits_state_changes_with_previous_state(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h)
    for to in (DeviceState.ACTIVE, DeviceState.SUSPENDED, DeviceState.ACTIVE, DeviceState.RETIRED):
        device = await h.change_device_state(OPERATOR_A, cmd.ChangeDeviceState(device.id, to, reason=f"to {to.name}"))
        assert store.state.devices[device.id].state is to
    changes = store.events_of_type("DeviceStateChanged")
    previous, now, reasons = [], [], []
    for event in changes:
        payload = ev.DeviceStateChanged()
        event.payload.Unpack(payload)
        previous.append(payload.previous_state)
        now.append(payload.device.state)
        reasons.append(payload.reason)
    assert previous == [pb.DEVICE_STATE_PROVISIONED, pb.DEVICE_STATE_ACTIVE, pb.DEVICE_STATE_SUSPENDED,
                        pb.DEVICE_STATE_ACTIVE]
    assert now == [pb.DEVICE_STATE_ACTIVE, pb.DEVICE_STATE_SUSPENDED, pb.DEVICE_STATE_ACTIVE, pb.DEVICE_STATE_RETIRED]
    assert reasons[-1] == "to RETIRED"
    assert device.version == 5


async def test_invalid_transition_is_failed_precondition_and_nothing_saved(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h)
    retired = await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device.id, DeviceState.RETIRED))
    before = snapshot(store)
    with pytest.raises(FailedPrecondition) as caught:
        await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device.id, DeviceState.ACTIVE))
    assert caught.value.reason == "INVALID_STATE_TRANSITION"
    assert snapshot(store) == before and store.state.devices[device.id] == retired


async def test_delete_device_removes_it_and_emits_device_deleted_with_serial(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await make_device(h, serial="SN-9")
    await h.delete_device(ADMIN_A, cmd.Delete(device.id, etag='"1"'))
    assert device.id not in store.state.devices
    (event,) = store.events_of_type("DeviceDeleted")
    payload = ev.DeviceDeleted()
    event.payload.Unpack(payload)
    assert (payload.name, payload.serial) == (device.name, "SN-9")
    with pytest.raises(NotFound):
        await h.get_device(ADMIN_A, device.id)
