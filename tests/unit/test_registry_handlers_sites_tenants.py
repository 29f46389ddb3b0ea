"""Registry site and tenant use cases over the in-memory unit of work: what each commits, emits, or refuses."""

from __future__ import annotations

import pytest
from fakes.registry import FakeRegistryStore

from muster.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.registry import commands as cmd
from services.registry.handlers import RegistryHandlers

from .registry_handlers_support import ADMIN_A, ADMIN_B, PLATFORM, VIEWER_A, A, B, make_device, make_site, snapshot
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

# --- sites -------------------------------------------------------------------------------------------

async def test_create_site_defaults_utc_and_emits_site_created(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await make_site(h)
    assert (site.time_zone, site.tenant_id, site.version) == ("UTC", A, 1)
    (event,) = store.events
    assert (event.type, event.subject, event.tenant) == ("SiteCreated", "sites/plant-1", A)


async def test_site_ids_are_per_tenant(h: RegistryHandlers) -> None:
    await make_site(h, ADMIN_A, "plant-1")
    await make_site(h, ADMIN_B, "plant-1")
    with pytest.raises(AlreadyExists):
        await make_site(h, ADMIN_A, "plant-1")


async def test_site_without_id_gets_a_generated_one(h: RegistryHandlers) -> None:
    site = await h.create_site(ADMIN_A, cmd.CreateSite(site_id="", display_name="Anon"))
    assert site.id.startswith("s") and len(site.id) == 12


async def test_site_update_refuses_a_bad_time_zone_and_keeps_the_old_one(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await make_site(h)
    with pytest.raises(InvalidArgument) as caught:
        await h.update_site(ADMIN_A, cmd.Update(site.id, frozenset({"time_zone"}), {"time_zone": "Mars/Base"}))
    assert caught.value.violations[0].field == "site.time_zone"
    assert store.state.sites[(A, site.id)] == site


async def test_delete_site_with_devices_is_failed_precondition_naming_the_count(
        h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await make_site(h)
    await make_device(h, site_id=site.id)
    await make_device(h, site_id=site.id)
    await make_device(h)  # not at the site: not counted
    before = snapshot(store)
    with pytest.raises(FailedPrecondition) as caught:
        await h.delete_site(ADMIN_A, cmd.Delete(site.id))
    assert caught.value.reason == "SITE_IN_USE"
    assert caught.value.metadata == {"devices": "2"}
    assert caught.value.message.startswith("2 device(s) are installed at sites/plant-1")
    assert snapshot(store) == before


async def test_delete_empty_site_emits_site_deleted(h: RegistryHandlers, store: FakeRegistryStore) -> None:
    site = await make_site(h)
    await h.delete_site(ADMIN_A, cmd.Delete(site.id, etag='"1"'))
    assert (A, site.id) not in store.state.sites
    assert [e.type for e in store.events] == ["SiteCreated", "SiteDeleted"]


async def test_same_site_id_in_another_tenant_does_not_count_its_devices(h: RegistryHandlers) -> None:
    await make_site(h, ADMIN_A, "plant-1")
    await make_site(h, ADMIN_B, "plant-1")
    await make_device(h, ADMIN_B, site_id="plant-1")
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
    await make_site(h)
    before = snapshot(store)
    with pytest.raises(FailedPrecondition) as caught:
        await h.delete_tenant(cmd.Delete(A))
    assert caught.value.reason == "TENANT_NOT_EMPTY"
    assert snapshot(store) == before


async def test_tenant_delete_is_refused_while_it_has_devices(h: RegistryHandlers) -> None:
    await make_device(h)
    with pytest.raises(FailedPrecondition):
        await h.delete_tenant(cmd.Delete(A))


async def test_empty_tenant_is_deleted_with_a_tenant_deleted_event(h: RegistryHandlers,
                                                                   store: FakeRegistryStore) -> None:
    await make_site(h, ADMIN_B)  # another tenant's data does not block A
    await h.delete_tenant(cmd.Delete(A, etag='"1"'))
    assert A not in store.state.tenants
    assert store.events[-1].type == "TenantDeleted" and store.events[-1].tenant == A


async def test_tenant_user_reads_own_tenant_only(h: RegistryHandlers) -> None:
    assert (await h.get_tenant(VIEWER_A, A)).id == A
    with pytest.raises(NotFound):
        await h.get_tenant(VIEWER_A, B)
    assert (await h.get_tenant(PLATFORM, B)).id == B
