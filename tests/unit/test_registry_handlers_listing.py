"""Registry listing over the in-memory unit of work: pagination, ordering, filters and page tokens."""

from __future__ import annotations

import pytest

from muster.runtime.auth import Principal
from muster.runtime.errors import InvalidArgument
from services.registry import commands as cmd
from services.registry.domain import DeviceState
from services.registry.handlers import RegistryHandlers

from .registry_handlers_support import ADMIN_B, OPERATOR_A, VIEWER_A, A, B, make_device, make_site
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

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
    created = [await make_device(h, display_name=f"pump {i % 3}") for i in range(11)]  # duplicate sort keys
    await make_device(h, ADMIN_B)  # another tenant's device never shows up
    pages = await _walk(h, OPERATOR_A, cmd.ListParams(page_size=3, order_by=order_by))
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    walked = [i for page in pages for i in page]
    assert sorted(walked) == sorted(d.id for d in created) and len(set(walked)) == 11
    everything, token = await h.list_devices(OPERATOR_A, cmd.ListParams(order_by=order_by))
    assert [d.id for d in everything] == walked and token == ""  # pages are slices of one order


async def test_default_order_is_oldest_first(h: RegistryHandlers) -> None:
    created = [await make_device(h) for _ in range(4)]
    listed, _ = await h.list_devices(VIEWER_A, cmd.ListParams())
    assert [d.id for d in listed] == [d.id for d in created]


async def test_exact_page_has_no_next_token(h: RegistryHandlers) -> None:
    for _ in range(4):
        await make_device(h)
    assert [len(p) for p in await _walk(h, VIEWER_A, cmd.ListParams(page_size=2))] == [2, 2]


async def test_devices_created_between_pages_neither_repeat_nor_skip_the_originals(h: RegistryHandlers) -> None:
    originals = [(await make_device(h)).id for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page, token = await h.list_devices(VIEWER_A, cmd.ListParams(page_size=2, page_token=token))
        seen.extend(d.id for d in page)
        if not token:
            break
        await make_device(h)
    assert [i for i in seen if i in originals] == originals
    assert len(seen) == len(set(seen))


async def test_filters_select_devices(h: RegistryHandlers) -> None:
    site = await make_site(h)
    prod = await make_device(h, labels={"env": "prod"}, site_id=site.id, display_name="pump-1")
    await make_device(h, labels={"env": "dev"}, display_name="valve")
    active = await make_device(h, display_name="pump-2")
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
        await make_device(h, labels={"env": "prod"})
    _, token = await h.list_devices(VIEWER_A, cmd.ListParams(page_size=1, filter='labels.env = "prod"'))
    assert token
    with pytest.raises(InvalidArgument) as caught:
        await h.list_devices(VIEWER_A, cmd.ListParams(page_size=1, page_token=token, filter=""))
    assert caught.value.violations[0].field == "page_token"


async def test_page_token_of_one_tenant_is_refused_for_another(h: RegistryHandlers) -> None:
    for _ in range(3):
        await make_device(h)
    _, token = await h.list_devices(VIEWER_A, cmd.ListParams(page_size=1))
    with pytest.raises(InvalidArgument):
        await h.list_devices(ADMIN_B, cmd.ListParams(page_size=1, page_token=token))


async def test_sites_and_tenants_paginate_too(h: RegistryHandlers) -> None:
    for i in range(5):
        await make_site(h, site_id=f"site-{i}")
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
