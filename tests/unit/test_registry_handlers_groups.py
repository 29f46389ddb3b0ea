"""Group use cases over the in-memory unit of work: CRUD with etags and events, static membership in
bulk (all or nothing), dynamic membership resolved on read, a device's groups of both kinds in one
paged list, memberships gone with their device, and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.registry import FakeClock, FakeRegistryStore, make_group_handlers

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from services.registry import commands as cmd
from services.registry.domain import Device
from services.registry.group_handlers import CreateGroup, GroupHandlers
from services.registry.groups import Group, GroupType
from services.registry.handlers import RegistryHandlers

from .registry_handlers_support import ADMIN_B, OPERATOR_A, VIEWER_A, A, make_device
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture


@pytest.fixture
def gh(store: FakeRegistryStore, clock: FakeClock) -> GroupHandlers:
    return make_group_handlers(store, clock)


async def _static(gh: GroupHandlers, group_id: str = "pumps", **fields: Any) -> Group:
    return await gh.create_group(OPERATOR_A, CreateGroup(display_name=f"Group {group_id}", group_id=group_id,
                                                         **fields))


async def _dynamic(gh: GroupHandlers, group_id: str, text: str) -> Group:
    return await _static(gh, group_id, type=GroupType.DYNAMIC, filter=text)


def _groups_state(store: FakeRegistryStore) -> tuple[object, ...]:
    return dict(store.state.groups), dict(store.state.group_members), len(store.events), store.commits


def _payload(store: FakeRegistryStore, name: str, message: Any) -> Any:
    (event,) = store.events_of_type(name)
    assert event.payload.Unpack(message)
    return message


# --- CRUD ---------------------------------------------------------------------------------------

async def test_create_get_list_update_delete_with_events(gh: GroupHandlers, store: FakeRegistryStore) -> None:
    group = await _static(gh, labels={"team": "ops"}, description="All pumps")
    assert await gh.get_group(VIEWER_A, "pumps") == group
    assert _payload(store, "GroupCreated", ev.GroupCreated()).group.labels == {"team": "ops"}
    await _dynamic(gh, "floor-3", 'labels.floor = "3"')
    listed, token = await gh.list_groups(VIEWER_A, cmd.ListParams(filter="type = DYNAMIC"))
    assert ([g.id for g in listed], token) == (["floor-3"], "")

    update = cmd.Update(id="pumps", mask=frozenset({"display_name"}), values={"display_name": "Pumps!"},
                        etag='"1"')
    updated = await gh.update_group(OPERATOR_A, update)
    assert (updated.display_name, updated.version, updated.description) == ("Pumps!", 2, "All pumps")
    assert list(_payload(store, "GroupUpdated", ev.GroupUpdated()).update_mask.paths) == ["display_name"]
    with pytest.raises(Aborted):
        await gh.update_group(OPERATOR_A, update)  # etag "1" is stale now
    with pytest.raises(Aborted):
        await gh.delete_group(OPERATOR_A, cmd.Delete("pumps", '"1"'))

    await gh.delete_group(OPERATOR_A, cmd.Delete("pumps", '"2"'))
    assert _payload(store, "GroupDeleted", ev.GroupDeleted()).name == "groups/pumps"
    with pytest.raises(NotFound):
        await gh.get_group(VIEWER_A, "pumps")


async def test_a_dynamic_groups_filter_is_validated_on_update(gh: GroupHandlers, store: FakeRegistryStore) -> None:
    await _dynamic(gh, "floor-3", 'labels.floor = "3"')
    before = _groups_state(store)
    with pytest.raises(InvalidArgument) as caught:
        await gh.update_group(OPERATOR_A, cmd.Update(id="floor-3", mask=frozenset({"filter"}),
                                                     values={"filter": "floor = 3"}))
    assert [v.field for v in caught.value.violations] == ["group.filter"]
    assert _groups_state(store) == before


async def test_duplicate_group_id_is_refused(gh: GroupHandlers) -> None:
    await _static(gh)
    with pytest.raises(Exception, match="already exists"):
        await _static(gh)


# --- static membership ----------------------------------------------------------------------------

async def test_add_members_in_bulk_is_idempotent_and_emits_only_new_members(
        h: RegistryHandlers, gh: GroupHandlers, store: FakeRegistryStore) -> None:
    d1, d2, d3 = [await make_device(h, display_name=f"d{i}") for i in range(3)]
    await _static(gh)
    assert await gh.add_members(OPERATOR_A, "pumps", [d1.id, d2.id, d1.id]) == [d1.id, d2.id]
    assert await gh.add_members(OPERATOR_A, "pumps", [d2.id, d3.id]) == [d3.id]
    assert await gh.add_members(OPERATOR_A, "pumps", [d3.id]) == []
    added = [e for e in store.events_of_type("GroupMembersAdded")]
    assert len(added) == 2  # the no-op call emitted nothing
    payload = ev.GroupMembersAdded()
    assert added[0].payload.Unpack(payload)
    assert (payload.group, list(payload.devices)) == ("groups/pumps", [f"devices/{d1.id}", f"devices/{d2.id}"])
    members, _ = await gh.list_members(VIEWER_A, "pumps", cmd.ListParams())
    assert [d.id for d in members] == [d1.id, d2.id, d3.id]

    assert await gh.remove_members(OPERATOR_A, "pumps", [d2.id, "x" * 20]) == [d2.id]
    removed = _payload(store, "GroupMembersRemoved", ev.GroupMembersRemoved())
    assert list(removed.devices) == [f"devices/{d2.id}"]
    members, _ = await gh.list_members(VIEWER_A, "pumps", cmd.ListParams())
    assert [d.id for d in members] == [d1.id, d3.id]


async def test_one_unknown_device_refuses_the_whole_add(h: RegistryHandlers, gh: GroupHandlers,
                                                        store: FakeRegistryStore) -> None:
    d1 = await make_device(h)
    await _static(gh)
    before = _groups_state(store)
    with pytest.raises(InvalidArgument) as caught:
        await gh.add_members(OPERATOR_A, "pumps", [d1.id, "a" * 20, d1.id, "b" * 20])
    assert [v.field for v in caught.value.violations] == ["devices[1]", "devices[3]"]
    assert _groups_state(store) == before


async def test_members_of_a_dynamic_group_cannot_be_added_or_removed(h: RegistryHandlers, gh: GroupHandlers,
                                                                     store: FakeRegistryStore) -> None:
    device = await make_device(h)
    await _dynamic(gh, "all-active", "state = ACTIVE")
    before = _groups_state(store)
    for change in (gh.add_members, gh.remove_members):
        with pytest.raises(FailedPrecondition) as caught:
            await change(OPERATOR_A, "all-active", [device.id])
        assert caught.value.reason == "GROUP_IS_DYNAMIC"
    assert _groups_state(store) == before


async def test_deleting_a_device_removes_its_memberships(h: RegistryHandlers, gh: GroupHandlers,
                                                         store: FakeRegistryStore) -> None:
    keep, gone = await make_device(h), await make_device(h)
    await _static(gh)
    await gh.add_members(OPERATOR_A, "pumps", [keep.id, gone.id])
    await h.delete_device(OPERATOR_A, cmd.Delete(gone.id))
    members, _ = await gh.list_members(VIEWER_A, "pumps", cmd.ListParams())
    assert [d.id for d in members] == [keep.id]
    assert all(key[2] != gone.id for key in store.state.group_members)


async def test_static_members_page_and_filter_like_list_devices(h: RegistryHandlers, gh: GroupHandlers) -> None:
    devices = [await make_device(h, display_name=f"pump {i}", labels={"odd": str(i % 2)}) for i in range(7)]
    await make_device(h, display_name="not a member", labels={"odd": "1"})
    await _static(gh)
    await gh.add_members(OPERATOR_A, "pumps", [d.id for d in devices])
    seen: list[str] = []
    token = ""
    while True:
        page, token = await gh.list_members(VIEWER_A, "pumps", cmd.ListParams(
            page_size=2, page_token=token, filter='labels.odd = "1"', order_by="display_name desc"))
        seen += [d.display_name for d in page]
        if not token:
            break
    assert seen == ["pump 5", "pump 3", "pump 1"]


# --- dynamic membership --------------------------------------------------------------------------

async def _fleet(h: RegistryHandlers) -> list[Device]:
    return [await make_device(h, display_name=f"d{i}", labels={"floor": str(i % 3)}) for i in range(9)]


async def test_dynamic_members_are_the_devices_matching_the_filter_now(h: RegistryHandlers,
                                                                      gh: GroupHandlers) -> None:
    fleet = await _fleet(h)
    await _dynamic(gh, "floor-1", 'labels.floor = "1"')
    members, _ = await gh.list_members(VIEWER_A, "floor-1", cmd.ListParams(page_size=2))
    assert [d.id for d in members] == [fleet[1].id, fleet[4].id]
    late = await make_device(h, labels={"floor": "1"})
    everything, token = await gh.list_members(VIEWER_A, "floor-1", cmd.ListParams(filter='display_name != "d7"'))
    assert ([d.id for d in everything], token) == ([fleet[1].id, fleet[4].id, late.id], "")


async def test_a_token_for_an_old_filter_is_refused(h: RegistryHandlers, gh: GroupHandlers) -> None:
    await _fleet(h)
    await _dynamic(gh, "floor-1", 'labels.floor = "1"')
    _, token = await gh.list_members(VIEWER_A, "floor-1", cmd.ListParams(page_size=1))
    assert token
    await gh.update_group(OPERATOR_A, cmd.Update(id="floor-1", mask=frozenset({"filter"}),
                                                 values={"filter": 'labels.floor = "2"'}))
    with pytest.raises(InvalidArgument) as caught:
        await gh.list_members(VIEWER_A, "floor-1", cmd.ListParams(page_size=1, page_token=token))
    assert [v.field for v in caught.value.violations] == ["page_token"]


async def test_a_devices_groups_include_static_and_matching_dynamic_ones_in_order(
        h: RegistryHandlers, gh: GroupHandlers) -> None:
    device = await make_device(h, labels={"floor": "3"})
    other = await make_device(h, labels={"floor": "4"})
    expected = []
    for i in range(5):
        static = await _static(gh, f"static-{i}")
        await gh.add_members(OPERATOR_A, static.id, [device.id if i % 2 == 0 else other.id])
        if i % 2 == 0:
            expected.append(static.id)
        matching = await _dynamic(gh, f"dynamic-{i}", 'labels.floor = "3"' if i != 2 else 'labels.floor = "4"')
        if i != 2:
            expected.append(matching.id)
    seen: list[str] = []
    token = ""
    while True:
        page, token = await gh.list_device_groups(VIEWER_A, device.id, cmd.ListParams(page_size=3, page_token=token))
        assert len(page) <= 3
        seen += [g.id for g in page]
        if not token:
            break
    assert seen == expected  # create_time order, static and dynamic interleaved
    dynamic_only, _ = await gh.list_device_groups(VIEWER_A, device.id, cmd.ListParams(filter="type = DYNAMIC"))
    assert [g.id for g in dynamic_only] == [g for g in expected if g.startswith("dynamic")]


async def test_a_devices_groups_scan_more_dynamic_groups_than_one_chunk(
        h: RegistryHandlers, gh: GroupHandlers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.registry.group_handlers.DYNAMIC_SCAN", 2)
    device = await make_device(h, labels={"floor": "3"})
    for i in range(7):
        await _dynamic(gh, f"dynamic-{i}", 'labels.floor = "3"' if i in (0, 5, 6) else 'labels.floor = "9"')
    page, token = await gh.list_device_groups(VIEWER_A, device.id, cmd.ListParams(page_size=2))
    assert [g.id for g in page] == ["dynamic-0", "dynamic-5"] and token
    rest, token = await gh.list_device_groups(VIEWER_A, device.id, cmd.ListParams(page_size=2, page_token=token))
    assert ([g.id for g in rest], token) == (["dynamic-6"], "")


# --- tenancy -------------------------------------------------------------------------------------

async def test_tenant_b_sees_none_of_tenant_as_groups_or_memberships(h: RegistryHandlers, gh: GroupHandlers,
                                                                     store: FakeRegistryStore) -> None:
    device = await make_device(h)
    await _static(gh)
    await gh.add_members(OPERATOR_A, "pumps", [device.id])
    assert await gh.list_groups(ADMIN_B, cmd.ListParams()) == ([], "")
    for call in (gh.get_group(ADMIN_B, "pumps"), gh.list_members(ADMIN_B, "pumps", cmd.ListParams()),
                 gh.list_device_groups(ADMIN_B, device.id, cmd.ListParams()),
                 gh.add_members(ADMIN_B, "pumps", [device.id]),
                 gh.delete_group(ADMIN_B, cmd.Delete("pumps"))):
        with pytest.raises(NotFound):
            await call
    assert ("tenant-a", "pumps") in store.state.groups


async def test_tenant_bs_devices_cannot_join_tenant_as_group(h: RegistryHandlers, gh: GroupHandlers,
                                                             store: FakeRegistryStore) -> None:
    theirs = await make_device(h, ADMIN_B)
    ours = await make_device(h)
    await _static(gh)
    before = _groups_state(store)
    with pytest.raises(InvalidArgument) as caught:
        await gh.add_members(OPERATOR_A, "pumps", [ours.id, theirs.id])
    assert [v.field for v in caught.value.violations] == ["devices[1]"]
    assert _groups_state(store) == before
    # B's own group of the same id is B's alone.
    await gh.create_group(ADMIN_B, CreateGroup(display_name="B pumps", group_id="pumps"))
    assert await gh.add_members(ADMIN_B, "pumps", [theirs.id]) == [theirs.id]
    members, _ = await gh.list_members(OPERATOR_A, "pumps", cmd.ListParams())
    assert members == []
    assert store.state.groups[(A, "pumps")].display_name == "Group pumps"
