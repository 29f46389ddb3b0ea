"""Minimum role per RPC. Anything not listed is refused (deny by default)."""

from __future__ import annotations

from muster.runtime.auth import Role
from muster.runtime.interceptors import PUBLIC

_TENANTS = "/muster.registry.v1.TenantService/"
_SITES = "/muster.registry.v1.SiteService/"
_DEVICES = "/muster.registry.v1.DeviceService/"
_TOKENS = "/muster.registry.v1.TokenService/"
_TEMPLATES = "/muster.registry.v1.TemplateService/"
_SENSORS = "/muster.registry.v1.SensorService/"
_MODULES = "/muster.registry.v1.ModuleService/"
_GROUPS = "/muster.registry.v1.GroupService/"
_BULK = "/muster.registry.v1.DeviceBulkService/"
_PROVISIONING = "/muster.registry.v1.ProvisioningService/"

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
    # Groups only organise devices (deleting one leaves its devices alone): operators manage them.
    _GROUPS + "CreateGroup": Role.OPERATOR,
    _GROUPS + "GetGroup": Role.VIEWER,
    _GROUPS + "ListGroups": Role.VIEWER,
    _GROUPS + "UpdateGroup": Role.OPERATOR,
    _GROUPS + "DeleteGroup": Role.OPERATOR,
    _GROUPS + "AddGroupMembers": Role.OPERATOR,
    _GROUPS + "RemoveGroupMembers": Role.OPERATOR,
    _GROUPS + "ListGroupMembers": Role.VIEWER,
    _GROUPS + "ListDeviceGroups": Role.VIEWER,
    # Import creates and updates devices, as CreateDevice/UpdateDevice do (never deletes or changes state).
    _BULK + "ImportDevices": Role.OPERATOR,
    _BULK + "ExportDevices": Role.VIEWER,
    # Provisioning tokens are credentials for the tenant: tenant admins only, even to read them.
    _PROVISIONING + "CreateProvisioningToken": Role.ADMIN,
    _PROVISIONING + "GetProvisioningToken": Role.ADMIN,
    _PROVISIONING + "ListProvisioningTokens": Role.ADMIN,
    _PROVISIONING + "RevokeProvisioningToken": Role.ADMIN,
    # A device registering itself has no operator token: the provisioning token in the body is its credential.
    _PROVISIONING + "RegisterDevice": PUBLIC,
    _PROVISIONING + "RotateDeviceSecret": Role.OPERATOR,
}
