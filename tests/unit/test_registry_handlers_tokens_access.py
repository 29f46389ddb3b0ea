"""Operator tokens the registry issues (who may issue which role for which tenant), and the access policy
the interceptor enforces on every registry RPC."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import timedelta
from types import ModuleType

import pytest
from fakes.registry import TOKEN_SECRET, FakeClock
from google.protobuf import descriptor_pool

import muster.registry.v1
from muster.runtime.auth import Principal, Role, TokenCodec
from muster.runtime.errors import InvalidArgument, NotFound, PermissionDenied
from muster.runtime.interceptors import PUBLIC
from services.registry import commands as cmd
from services.registry.access import ACCESS_POLICY
from services.registry.handlers import RegistryHandlers

from .registry_handlers_support import ADMIN_A, OPERATOR_A, PLATFORM, VIEWER_A, A, B
from .registry_handlers_support import clock as clock  # fixture
from .registry_handlers_support import h as h  # fixture
from .registry_handlers_support import store as store  # fixture

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


# --- the access policy the interceptor enforces ----------------------------------------------------

def _service_modules() -> list[ModuleType]:
    """Every generated `*_service_pb2` module of the registry package, so a new service cannot be missed."""
    names = (m.name for m in pkgutil.iter_modules(muster.registry.v1.__path__) if m.name.endswith("_service_pb2"))
    return [importlib.import_module(f"muster.registry.v1.{name}") for name in sorted(names)]


def _all_methods() -> list[str]:
    pool = descriptor_pool.Default()
    methods: list[str] = []
    for module in _service_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            service = pool.FindServiceByName(service.full_name)
            methods.extend(f"/{service.full_name}/{m.name}" for m in service.methods)
    return methods


def test_every_rpc_has_an_access_policy_entry_and_only_device_registration_is_public() -> None:
    methods = _all_methods()
    assert sorted(methods) == sorted(ACCESS_POLICY)
    public = [method for method, role in ACCESS_POLICY.items() if role is PUBLIC]
    assert public == ["/muster.registry.v1.ProvisioningService/RegisterDevice"]


def test_viewers_may_only_read() -> None:
    readable = {m for m, role in ACCESS_POLICY.items() if role is Role.VIEWER}
    assert readable == {"/muster.registry.v1.TenantService/GetTenant", "/muster.registry.v1.SiteService/GetSite",
                        "/muster.registry.v1.SiteService/ListSites", "/muster.registry.v1.DeviceService/GetDevice",
                        "/muster.registry.v1.DeviceService/ListDevices",
                        "/muster.registry.v1.TemplateService/GetTemplate",
                        "/muster.registry.v1.TemplateService/ListTemplates",
                        "/muster.registry.v1.SensorService/ListSensors",
                        "/muster.registry.v1.ModuleService/ListModules",
                        "/muster.registry.v1.GroupService/GetGroup", "/muster.registry.v1.GroupService/ListGroups",
                        "/muster.registry.v1.GroupService/ListGroupMembers",
                        "/muster.registry.v1.GroupService/ListDeviceGroups",
                        "/muster.registry.v1.DeviceBulkService/ExportDevices"}


def test_tenant_administration_is_platform_admin_only() -> None:
    for name in ("CreateTenant", "ListTenants", "UpdateTenant", "DeleteTenant"):
        assert ACCESS_POLICY[f"/muster.registry.v1.TenantService/{name}"] is Role.PLATFORM_ADMIN
