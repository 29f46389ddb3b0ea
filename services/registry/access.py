"""Minimum role per RPC. Anything not listed is refused (deny by default)."""

from __future__ import annotations

from muster.runtime.auth import Role

_TENANTS = "/muster.registry.v1.TenantService/"
_SITES = "/muster.registry.v1.SiteService/"
_DEVICES = "/muster.registry.v1.DeviceService/"
_TOKENS = "/muster.registry.v1.TokenService/"
_TEMPLATES = "/muster.registry.v1.TemplateService/"
_SENSORS = "/muster.registry.v1.SensorService/"
_MODULES = "/muster.registry.v1.ModuleService/"

ACCESS_POLICY: dict[str, Role | None] = {
    _TENANTS + "CreateTenant": Role.PLATFORM_ADMIN,
    _TENANTS + "GetTenant": Role.VIEWER,  # a tenant's users may read their own tenant
    _TENANTS + "ListTenants": Role.PLATFORM_ADMIN,
    _TENANTS + "UpdateTenant": Role.PLATFORM_ADMIN,
    _TENANTS + "DeleteTenant": Role.PLATFORM_ADMIN,
    _SITES + "CreateSite": Role.ADMIN,
    _SITES + "GetSite": Role.VIEWER,
    _SITES + "ListSites": Role.VIEWER,
    _SITES + "UpdateSite": Role.ADMIN,
    _SITES + "DeleteSite": Role.ADMIN,
    _DEVICES + "CreateDevice": Role.OPERATOR,
    _DEVICES + "GetDevice": Role.VIEWER,
    _DEVICES + "ListDevices": Role.VIEWER,
    _DEVICES + "UpdateDevice": Role.OPERATOR,
    _DEVICES + "DeleteDevice": Role.ADMIN,
    _DEVICES + "ActivateDevice": Role.OPERATOR,
    _DEVICES + "SuspendDevice": Role.OPERATOR,
    _DEVICES + "RetireDevice": Role.ADMIN,
    _TOKENS + "IssueOperatorToken": Role.ADMIN,
    # Tenant admins manage their tenant's templates; platform admins the system ones.
    _TEMPLATES + "CreateTemplate": Role.ADMIN,
    _TEMPLATES + "GetTemplate": Role.VIEWER,
    _TEMPLATES + "ListTemplates": Role.VIEWER,
    _TEMPLATES + "UpdateTemplate": Role.ADMIN,
    _TEMPLATES + "DeleteTemplate": Role.ADMIN,
    _TEMPLATES + "CloneTemplate": Role.ADMIN,
    _SENSORS + "ListSensors": Role.VIEWER,
    _SENSORS + "CreateSensor": Role.OPERATOR,
    _SENSORS + "UpdateSensor": Role.OPERATOR,
    _SENSORS + "DeleteSensor": Role.OPERATOR,
    _MODULES + "ListModules": Role.VIEWER,
    _MODULES + "CreateModule": Role.OPERATOR,
    _MODULES + "UpdateModule": Role.OPERATOR,
    _MODULES + "DeleteModule": Role.OPERATOR,
}
