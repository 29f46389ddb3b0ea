"""Registry use cases over the in-memory unit of work: what each commits, emits, or refuses."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from fakes.registry import (
    TOKEN_SECRET,
    FakeClock,
    FakeRegistryStore,
    RowLevelSecurityViolation,
    make_handlers,
    repository_interfaces,
)
from google.protobuf import descriptor_pool

from muster.registry.v1 import device_service_pb2, site_service_pb2, tenant_service_pb2, token_service_pb2
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.auth import Principal, Role, TokenCodec
from muster.runtime.db import Scope
from muster.runtime.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.registry import commands as cmd
from services.registry.access import ACCESS_POLICY
from services.registry.domain import Device, DeviceState, Location, Site
from services.registry.handlers import RegistryHandlers
from services.registry.mapping import device_to_proto

A, B = "tenant-a", "tenant-b"
ADMIN_A = Principal("alice", Role.ADMIN, A)
OPERATOR_A = Principal("olga", Role.OPERATOR, A)
VIEWER_A = Principal("vic", Role.VIEWER, A)
ADMIN_B = Principal("bob", Role.ADMIN, B)
PLATFORM = Principal("root", Role.PLATFORM_ADMIN, None)


@pytest.fixture
def store() -> FakeRegistryStore:
    store = FakeRegistryStore()
    store.seed_tenant(A)
    store.seed_tenant(B)
    return store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(store: FakeRegistryStore, clock: FakeClock) -> RegistryHandlers:
    return make_handlers(store, clock)


async def _site(h: RegistryHandlers, principal: Principal = ADMIN_A, site_id: str = "plant-1") -> Site:
    return await h.create_site(principal, cmd.CreateSite(site_id=site_id, display_name=f"Site {site_id}"))


async def _device(h: RegistryHandlers, principal: Principal = OPERATOR_A, **fields: object) -> Device:
    return await h.create_device(principal, cmd.CreateDevice(**fields))  # type: ignore[arg-type]


def _snapshot(store: FakeRegistryStore) -> tuple[object, ...]:
    return (dict(store.state.tenants), dict(store.state.sites), dict(store.state.devices), len(store.events),
            store.commits)


# --- the fake itself stays honest ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tenants", "sites", "devices"])
def test_fake_repositories_have_the_real_public_methods_and_signatures(name: str) -> None:
    fake, real = repository_interfaces()[name]

    def public(cls: type) -> dict[str, list[str]]:
        return {n: list(inspect.signature(f).parameters) for n, f in inspect.getmembers(cls, inspect.isfunction)
                if not n.startswith("_")}

    assert public(fake) == public(real)


async def test_fake_refuses_a_row_of_another_tenant_like_rls_with_check(store: FakeRegistryStore) -> None:
    device = Device(tenant_id=B, id="b" * 20, create_time=store.state.tenants[B].create_time,
                    update_time=store.state.tenants[B].create_time)
    async with store(Scope.of_tenant(A)) as uow:
        with pytest.raises(RowLevelSecurityViolation):
            await uow.devices.add(device)


# --- devices: create ---------------------------------------------------------------------------------

async def test_create_device_emits_device_created_in_the_same_unit_of_work_and_commits(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await _device(h, display_name="Pump 7", labels={"env": "prod"}, serial="SN-1")
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
    site = await _site(h)
    device = await _device(h, site_id=site.id)
    assert store.state.devices[device.id].site_id == site.id


async def test_invalid_device_commits_nothing_and_emits_nothing(h: RegistryHandlers,
                                                                store: FakeRegistryStore) -> None:
    before = _snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await _device(h, labels={"Bad Key": "v"}, location=Location(95.0, 0.0))
    assert [v.field for v in caught.value.violations] == ["device.labels.Bad Key", "device.location.latitude"]
    assert _snapshot(store) == before


@pytest.mark.parametrize("site_owner", [None, B])
async def test_device_at_a_missing_or_foreign_site_is_refused_and_nothing_saved(
        h: RegistryHandlers, store: FakeRegistryStore, site_owner: str | None) -> None:
    if site_owner is not None:
        await _site(h, ADMIN_B, "plant-b")  # exists, but in tenant B
    before = _snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await _device(h, site_id="plant-b")
    assert caught.value.violations[0].field == "device.site"
    assert _snapshot(store) == before


async def test_duplicate_serial_in_a_tenant_is_refused_but_allowed_across_tenants(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await _device(h, serial="SN-1")
    with pytest.raises(AlreadyExists):
        await _device(h, serial="SN-1")
    await _device(h, ADMIN_B, serial="SN-1")
    assert len(store.events_of_type("DeviceCreated")) == 2


async def test_platform_admin_token_cannot_act_inside_a_tenant(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    with pytest.raises(PermissionDenied) as caught:
        await _device(h, PLATFORM)
    assert caught.value.reason == "TENANT_REQUIRED"
    assert store.units == [] and store.commits == 0


# --- devices: read, update, lifecycle, delete --------------------------------------------------------

async def test_device_of_another_tenant_is_not_found_and_the_message_leaks_nothing(h: RegistryHandlers) -> None:
    theirs = await _device(h, ADMIN_B, display_name="Secret B pump", serial="B-SERIAL")
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
    device = await _device(h, display_name="old", labels={"env": "dev"}, notes="keep")
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
    device = await _device(h, display_name="v1")
    await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"display_name"}), {"display_name": "v2"}))
    before = _snapshot(store)
    with pytest.raises(Aborted) as caught:
        await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"display_name"}),
                                                     {"display_name": "v3"}, etag='"1"'))
    assert caught.value.reason == "ETAG_MISMATCH"
    assert _snapshot(store) == before
    assert store.state.devices[device.id].display_name == "v2"


@pytest.mark.parametrize("write", ["delete", "retire"])
async def test_stale_etag_also_guards_delete_and_lifecycle(h: RegistryHandlers, store: FakeRegistryStore,
                                                           write: str) -> None:
    device = await _device(h)
    await h.change_device_state(OPERATOR_A, cmd.ChangeDeviceState(device.id, DeviceState.ACTIVE))
    before = _snapshot(store)
    with pytest.raises(Aborted):
        if write == "delete":
            await h.delete_device(ADMIN_A, cmd.Delete(device.id, etag='"1"'))
        else:
            await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device.id, DeviceState.RETIRED, etag='"1"'))
    assert _snapshot(store) == before


async def test_update_validates_the_result_before_saving(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await _device(h)
    before = _snapshot(store)
    with pytest.raises(InvalidArgument) as caught:
        await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"labels"}), {"labels": {"UP": "x"}}))
    assert caught.value.violations[0].field == "device.labels.UP"
    with pytest.raises(InvalidArgument):
        await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"site"}), {"site": "nowhere"}))
    assert _snapshot(store) == before


async def test_update_can_move_a_device_to_a_site_and_off_it_again(h: RegistryHandlers) -> None:
    site = await _site(h)
    device = await _device(h)
    moved = await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"site"}), {"site": site.id}))
    assert moved.site_id == site.id
    cleared = await h.update_device(OPERATOR_A, cmd.Update(device.id, frozenset({"site"}), {"site": None}))
    assert cleared.site_id is None


async def test_lifecycle_through_handlers_emits_state_changes_with_previous_state(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await _device(h)
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
    device = await _device(h)
    retired = await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device.id, DeviceState.RETIRED))
    before = _snapshot(store)
    with pytest.raises(FailedPrecondition) as caught:
        await h.change_device_state(ADMIN_A, cmd.ChangeDeviceState(device.id, DeviceState.ACTIVE))
    assert caught.value.reason == "INVALID_STATE_TRANSITION"
    assert _snapshot(store) == before and store.state.devices[device.id] == retired


async def test_delete_device_removes_it_and_emits_device_deleted_with_serial(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    device = await _device(h, serial="SN-9")
    await h.delete_device(ADMIN_A, cmd.Delete(device.id, etag='"1"'))
    assert device.id not in store.state.devices
    (event,) = store.events_of_type("DeviceDeleted")
    payload = ev.DeviceDeleted()
    event.payload.Unpack(payload)
    assert (payload.name, payload.serial) == (device.name, "SN-9")
    with pytest.raises(NotFound):
        await h.get_device(ADMIN_A, device.id)


# --- sites -------------------------------------------------------------------------------------------

async def test_create_site_defaults_utc_and_emits_site_created(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await _site(h)
    assert (site.time_zone, site.tenant_id, site.version) == ("UTC", A, 1)
    (event,) = store.events
    assert (event.type, event.subject, event.tenant) == ("SiteCreated", "sites/plant-1", A)


async def test_site_ids_are_per_tenant(h: RegistryHandlers) -> None:
    await _site(h, ADMIN_A, "plant-1")
    await _site(h, ADMIN_B, "plant-1")
    with pytest.raises(AlreadyExists):
        await _site(h, ADMIN_A, "plant-1")


async def test_site_without_id_gets_a_generated_one(h: RegistryHandlers) -> None:
    site = await h.create_site(ADMIN_A, cmd.CreateSite(site_id="", display_name="Anon"))
    assert site.id.startswith("s") and len(site.id) == 12


async def test_site_update_refuses_a_bad_time_zone_and_keeps_the_old_one(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await _site(h)
    with pytest.raises(InvalidArgument) as caught:
        await h.update_site(ADMIN_A, cmd.Update(site.id, frozenset({"time_zone"}), {"time_zone": "Mars/Base"}))
    assert caught.value.violations[0].field == "site.time_zone"
    assert store.state.sites[(A, site.id)] == site


async def test_delete_site_with_devices_is_failed_precondition_naming_the_count(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await _site(h)
    await _device(h, site_id=site.id)
    await _device(h, site_id=site.id)
    await _device(h)  # not at the site: not counted
    before = _snapshot(store)
    with pytest.raises(FailedPrecondition) as caught:
        await h.delete_site(ADMIN_A, cmd.Delete(site.id))
    assert caught.value.reason == "SITE_IN_USE"
    assert caught.value.metadata == {"devices": "2"}
    assert caught.value.message.startswith("2 device(s) are installed at sites/plant-1")
    assert _snapshot(store) == before


async def test_delete_empty_site_emits_site_deleted(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await _site(h)
    await h.delete_site(ADMIN_A, cmd.Delete(site.id, etag='"1"'))
    assert (A, site.id) not in store.state.sites
    assert [e.type for e in store.events] == ["SiteCreated", "SiteDeleted"]


async def test_same_site_id_in_another_tenant_does_not_count_its_devices(h: RegistryHandlers) -> None:
    await _site(h, ADMIN_A, "plant-1")
    await _site(h, ADMIN_B, "plant-1")
    await _device(h, ADMIN_B, site_id="plant-1")
    await h.delete_site(ADMIN_A, cmd.Delete("plant-1"))  # B's device is B's business
    with pytest.raises(FailedPrecondition):
        await h.delete_site(ADMIN_B, cmd.Delete("plant-1"))


# --- tenants -----------------------------------------------------------------------------------------

async def test_create_tenant_emits_tenant_created_under_the_new_tenant(h: RegistryHandlers,
                                                                       store: FakeRegistryStore) -> None:
    tenant = await h.create_tenant(cmd.CreateTenant("tenant-c", "C Corp"))
    assert store.state.tenants["tenant-c"] == tenant
    (event,) = store.events
    assert (event.type, event.tenant, event.subject) == ("TenantCreated", "tenant-c", "tenants/tenant-c")
    with pytest.raises(AlreadyExists):
        await h.create_tenant(cmd.CreateTenant("tenant-c", "again"))


async def test_invalid_tenant_id_is_refused_before_any_unit_of_work(h: RegistryHandlers,
                                                                    store: FakeRegistryStore) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await h.create_tenant(cmd.CreateTenant("Not Valid", "x"))
    assert caught.value.violations[0].field == "tenant_id"
    assert store.units == []


async def test_tenant_delete_is_refused_while_it_has_sites(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    await _site(h)
    before = _snapshot(store)
    with pytest.raises(FailedPrecondition) as caught:
        await h.delete_tenant(cmd.Delete(A))
    assert caught.value.reason == "TENANT_NOT_EMPTY"
    assert _snapshot(store) == before


async def test_tenant_delete_is_refused_while_it_has_devices(h: RegistryHandlers) -> None:
    await _device(h)
    with pytest.raises(FailedPrecondition):
        await h.delete_tenant(cmd.Delete(A))


async def test_empty_tenant_is_deleted_with_a_tenant_deleted_event(h: RegistryHandlers,
                                                                   store: FakeRegistryStore) -> None:
    await _site(h, ADMIN_B)  # another tenant's data does not block A
    await h.delete_tenant(cmd.Delete(A, etag='"1"'))
    assert A not in store.state.tenants
    assert store.events[-1].type == "TenantDeleted" and store.events[-1].tenant == A


async def test_tenant_user_reads_own_tenant_only(h: RegistryHandlers) -> None:
    assert (await h.get_tenant(VIEWER_A, A)).id == A
    with pytest.raises(NotFound):
        await h.get_tenant(VIEWER_A, B)
    assert (await h.get_tenant(PLATFORM, B)).id == B


# --- operator tokens ---------------------------------------------------------------------------------

CODEC = TokenCodec(TOKEN_SECRET)


async def test_tenant_admin_issues_a_lower_role_token_for_its_own_tenant(h: RegistryHandlers,
                                                                         clock: FakeClock) -> None:
    token, expires = await h.issue_operator_token(ADMIN_A, cmd.IssueOperatorToken(None, Role.VIEWER, "ci-bot",
                                                                                  timedelta(hours=1)))
    assert CODEC.verify(token) == Principal("ci-bot", Role.VIEWER, A)
    assert expires == clock.now + timedelta(hours=1)


@pytest.mark.parametrize(("caller", "role"), [
    (ADMIN_A, Role.PLATFORM_ADMIN),  # escalation to platform admin
    (OPERATOR_A, Role.VIEWER),  # operators issue nothing
    (OPERATOR_A, Role.OPERATOR),
    (VIEWER_A, Role.VIEWER),
])
async def test_token_role_escalation_is_refused(h: RegistryHandlers, caller: Principal, role: Role) -> None:
    with pytest.raises(PermissionDenied) as caught:
        await h.issue_operator_token(caller, cmd.IssueOperatorToken(None, role, "mallory"))
    assert caught.value.reason == "ROLE_TOO_LOW"


async def test_tenant_admin_cannot_issue_for_another_tenant(h: RegistryHandlers) -> None:
    with pytest.raises(NotFound) as caught:
        await h.issue_operator_token(ADMIN_A, cmd.IssueOperatorToken(B, Role.VIEWER, "mallory"))
    assert caught.value.message == f"tenants/{B} not found"


async def test_platform_admin_issues_for_any_existing_tenant_only(h: RegistryHandlers) -> None:
    token, _ = await h.issue_operator_token(PLATFORM, cmd.IssueOperatorToken(B, Role.ADMIN, "bob"))
    assert CODEC.verify(token) == Principal("bob", Role.ADMIN, B)
    with pytest.raises(NotFound):
        await h.issue_operator_token(PLATFORM, cmd.IssueOperatorToken("no-such-tenant", Role.ADMIN, "x"))
    with pytest.raises(InvalidArgument) as caught:
        await h.issue_operator_token(PLATFORM, cmd.IssueOperatorToken(None, Role.ADMIN, "x"))
    assert caught.value.violations[0].field == "tenant"


async def test_platform_admin_token_has_no_tenant(h: RegistryHandlers) -> None:
    token, _ = await h.issue_operator_token(PLATFORM, cmd.IssueOperatorToken(None, Role.PLATFORM_ADMIN, "ops"))
    assert CODEC.verify(token).tenant is None
    with pytest.raises(InvalidArgument):
        await h.issue_operator_token(PLATFORM, cmd.IssueOperatorToken(A, Role.PLATFORM_ADMIN, "ops"))


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), timedelta(days=366)])
async def test_token_ttl_must_be_positive_and_at_most_a_year(h: RegistryHandlers, ttl: timedelta) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await h.issue_operator_token(ADMIN_A, cmd.IssueOperatorToken(None, Role.VIEWER, "x", ttl))
    assert caught.value.violations[0].field == "ttl"


# --- listing -----------------------------------------------------------------------------------------

async def _walk(h: RegistryHandlers, principal: Principal, params: cmd.ListParams) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        devices, token = await h.list_devices(principal, cmd.ListParams(
            page_size=params.page_size, page_token=token, filter=params.filter, order_by=params.order_by))
        pages.append([d.id for d in devices])
        if not token:
            return pages
        assert len(pages) < 100, "pagination does not terminate"


@pytest.mark.parametrize("order_by", ["", "create_time desc", "display_name", "display_name desc, create_time"])
async def test_pagination_walks_every_device_exactly_once(h: RegistryHandlers, order_by: str) -> None:
    created = [await _device(h, display_name=f"pump {i % 3}") for i in range(11)]  # duplicate sort keys
    await _device(h, ADMIN_B)  # another tenant's device never shows up
    pages = await _walk(h, OPERATOR_A, cmd.ListParams(page_size=3, order_by=order_by))
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    walked = [i for page in pages for i in page]
    assert sorted(walked) == sorted(d.id for d in created) and len(set(walked)) == 11
    everything, token = await h.list_devices(OPERATOR_A, cmd.ListParams(order_by=order_by))
    assert [d.id for d in everything] == walked and token == ""  # pages are slices of one order


async def test_default_order_is_oldest_first(h: RegistryHandlers) -> None:
    created = [await _device(h) for _ in range(4)]
    listed, _ = await h.list_devices(VIEWER_A, cmd.ListParams())
    assert [d.id for d in listed] == [d.id for d in created]


async def test_exact_page_has_no_next_token(h: RegistryHandlers) -> None:
    for _ in range(4):
        await _device(h)
    assert [len(p) for p in await _walk(h, VIEWER_A, cmd.ListParams(page_size=2))] == [2, 2]


async def test_devices_created_between_pages_neither_repeat_nor_skip_the_originals(h: RegistryHandlers) -> None:
    originals = [(await _device(h)).id for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page, token = await h.list_devices(VIEWER_A, cmd.ListParams(page_size=2, page_token=token))
        seen.extend(d.id for d in page)
        if not token:
            break
        await _device(h)
    assert [i for i in seen if i in originals] == originals
    assert len(seen) == len(set(seen))


async def test_filters_select_devices(h: RegistryHandlers) -> None:
    site = await _site(h)
    prod = await _device(h, labels={"env": "prod"}, site_id=site.id, display_name="pump-1")
    await _device(h, labels={"env": "dev"}, display_name="valve")
    active = await _device(h, display_name="pump-2")
    await h.change_device_state(OPERATOR_A, cmd.ChangeDeviceState(active.id, DeviceState.ACTIVE))

    async def ids(filter_text: str) -> set[str]:
        found, _ = await h.list_devices(VIEWER_A, cmd.ListParams(filter=filter_text))
        return {d.id for d in found}

    assert await ids('labels.env = "prod"') == {prod.id}
    assert await ids(f'site = "sites/{site.id}"') == {prod.id}
    assert await ids("state = ACTIVE") == {active.id}
    assert await ids('display_name = "pump*" AND NOT state = DEVICE_STATE_ACTIVE') == {prod.id}


async def test_bad_filter_is_invalid_argument_on_filter(h: RegistryHandlers) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await h.list_devices(VIEWER_A, cmd.ListParams(filter="colour = red"))
    assert caught.value.violations[0].field == "filter"
    assert "unknown field" in caught.value.message


async def test_page_token_reused_with_another_filter_is_refused(h: RegistryHandlers) -> None:
    for _ in range(3):
        await _device(h, labels={"env": "prod"})
    _, token = await h.list_devices(VIEWER_A, cmd.ListParams(page_size=1, filter='labels.env = "prod"'))
    assert token
    with pytest.raises(InvalidArgument) as caught:
        await h.list_devices(VIEWER_A, cmd.ListParams(page_size=1, page_token=token, filter=""))
    assert caught.value.violations[0].field == "page_token"


async def test_page_token_of_one_tenant_is_refused_for_another(h: RegistryHandlers) -> None:
    for _ in range(3):
        await _device(h)
    _, token = await h.list_devices(VIEWER_A, cmd.ListParams(page_size=1))
    with pytest.raises(InvalidArgument):
        await h.list_devices(ADMIN_B, cmd.ListParams(page_size=1, page_token=token))


async def test_sites_and_tenants_paginate_too(h: RegistryHandlers) -> None:
    for i in range(5):
        await _site(h, site_id=f"site-{i}")
    sites: list[str] = []
    token = ""
    while True:
        page, token = await h.list_sites(VIEWER_A, cmd.ListParams(page_size=2, page_token=token,
                                                                  order_by="display_name desc"))
        sites.extend(s.id for s in page)
        if not token:
            break
    assert sites == [f"site-{i}" for i in reversed(range(5))]
    for i in range(3):
        await h.create_tenant(cmd.CreateTenant(f"extra-{i}", f"Extra {i}"))
    tenants: list[str] = []
    token = ""
    while True:
        tpage, token = await h.list_tenants(cmd.ListParams(page_size=2, page_token=token))
        tenants.extend(t.id for t in tpage)
        if not token:
            break
    assert sorted(tenants) == sorted([A, B, "extra-0", "extra-1", "extra-2"])


# --- the access policy the interceptor enforces ----------------------------------------------------

_SERVICE_MODULES = (tenant_service_pb2, site_service_pb2, device_service_pb2, token_service_pb2)


def _all_methods() -> list[str]:
    pool = descriptor_pool.Default()
    methods: list[str] = []
    for module in _SERVICE_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            service = pool.FindServiceByName(service.full_name)
            methods.extend(f"/{service.full_name}/{m.name}" for m in service.methods)
    return methods


def test_every_rpc_has_an_access_policy_entry_and_none_is_public() -> None:
    methods = _all_methods()
    assert sorted(methods) == sorted(ACCESS_POLICY)
    assert all(role is not None for role in ACCESS_POLICY.values())


def test_viewers_may_only_read() -> None:
    readable = {m for m, role in ACCESS_POLICY.items() if role is Role.VIEWER}
    assert readable == {"/muster.registry.v1.TenantService/GetTenant", "/muster.registry.v1.SiteService/GetSite",
                        "/muster.registry.v1.SiteService/ListSites", "/muster.registry.v1.DeviceService/GetDevice",
                        "/muster.registry.v1.DeviceService/ListDevices"}


def test_tenant_administration_is_platform_admin_only() -> None:
    for name in ("CreateTenant", "ListTenants", "UpdateTenant", "DeleteTenant"):
        assert ACCESS_POLICY[f"/muster.registry.v1.TenantService/{name}"] is Role.PLATFORM_ADMIN
