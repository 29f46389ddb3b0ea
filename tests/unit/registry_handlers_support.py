"""What the registry handler tests share: principals of two tenants, the handlers over the in-memory
unit of work (fixtures `store`, `clock`, `h`), and shortcuts to create rows and snapshot the store.

Test modules import the fixtures under their own names, e.g.
`from .registry_handlers_support import h as h  # fixture`: pytest finds fixtures by name in the test
module, and the redundant alias tells linters the import is used."""

from __future__ import annotations

import pytest
from fakes.registry import FakeClock, FakeRegistryStore, make_handlers

from muster.runtime.auth import Principal, Role
from services.registry import commands as cmd
from services.registry.domain import Device, Site
from services.registry.handlers import RegistryHandlers

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


async def make_site(h: RegistryHandlers, principal: Principal = ADMIN_A, site_id: str = "plant-1") -> Site:
    return await h.create_site(principal, cmd.CreateSite(site_id=site_id, display_name=f"Site {site_id}"))


async def make_device(h: RegistryHandlers, principal: Principal = OPERATOR_A, **fields: object) -> Device:
    return await h.create_device(principal, cmd.CreateDevice(**fields))  # type: ignore[arg-type]


def snapshot(store: FakeRegistryStore) -> tuple[object, ...]:
    return (dict(store.state.tenants), dict(store.state.sites), dict(store.state.devices), len(store.events),
            store.commits)
