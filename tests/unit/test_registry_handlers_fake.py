"""The in-memory registry store the handler tests run on stays honest: same repository interfaces as the
real ones, and row-level security like PostgreSQL's."""

from __future__ import annotations

import inspect

import pytest
from fakes.registry import FakeRegistryStore, RowLevelSecurityViolation, repository_interfaces

from muster.runtime.db import Scope
from services.registry.domain import Device

from .registry_handlers_support import A, B
from .registry_handlers_support import store as store  # fixture

# --- the fake itself stays honest ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tenants", "sites", "devices", "templates", "sensors", "modules"])
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
