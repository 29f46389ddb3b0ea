"""The registry's gRPC edge: proto in, command to a handler, proto out. No rules live here."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site
from muster.registry.v1 import site_service_pb2_grpc as site_grpc
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.registry.v1 import token_service_pb2 as tok
from muster.registry.v1 import token_service_pb2_grpc as tok_grpc
from muster.runtime.auth import Role
from muster.runtime.context import current_principal
from muster.runtime.errors import InvalidArgument
from muster.runtime.fieldmask import validate_update_mask
from muster.runtime.names import parse_name
from muster.runtime.timestamps import timestamp_of
from services.registry import commands as cmd
from services.registry.domain import DEVICE_ID_PATTERN, ID_PATTERN, DeviceState
from services.registry.handlers import RegistryHandlers
from services.registry.mapping import device_to_proto, location_from_proto, site_to_proto, tenant_to_proto
from services.registry.transport_mapping import transports_from_proto

Context = grpc.aio.ServicerContext[Any, Any]

TENANT_FIELDS = ("display_name",)
SITE_FIELDS = ("display_name", "address", "time_zone", "location", "labels")
DEVICE_FIELDS = ("display_name", "site", "labels", "notes", "location", "template", "transports")


def _list_params(request: Any) -> cmd.ListParams:
    return cmd.ListParams(page_size=request.page_size, page_token=request.page_token, filter=request.filter,
                          order_by=request.order_by)


def _site_ref(value: str, field: str) -> str | None:
    return parse_name(value, "sites", ID_PATTERN, field=field) if value else None


def _template_ref(value: str, field: str) -> str | None:
    return parse_name(value, "templates", ID_PATTERN, field=field) if value else None


def _update(message: Message, resource_id: str, mask_paths: list[str], allowed: tuple[str, ...],
            etag: str, value_of: Any) -> cmd.Update:
    mask = validate_update_mask(mask_paths, allowed)
    return cmd.Update(id=resource_id, mask=mask, values={path: value_of(message, path) for path in mask}, etag=etag)


class TenantServicer(ten_grpc.TenantServiceServicer):
    def __init__(self, handlers: RegistryHandlers) -> None:
        self._h = handlers

    async def CreateTenant(self, request: ten.CreateTenantRequest, context: Context) -> pb.Tenant:
        tenant = await self._h.create_tenant(cmd.CreateTenant(request.tenant_id, request.tenant.display_name))
        return tenant_to_proto(tenant)

    async def GetTenant(self, request: ten.GetTenantRequest, context: Context) -> pb.Tenant:
        tenant_id = parse_name(request.name, "tenants", ID_PATTERN)
        return tenant_to_proto(await self._h.get_tenant(current_principal(), tenant_id))

    async def ListTenants(self, request: ten.ListTenantsRequest, context: Context) -> ten.ListTenantsResponse:
        tenants, token = await self._h.list_tenants(_list_params(request))
        return ten.ListTenantsResponse(tenants=[tenant_to_proto(t) for t in tenants], next_page_token=token)

    async def UpdateTenant(self, request: ten.UpdateTenantRequest, context: Context) -> pb.Tenant:
        tenant_id = parse_name(request.tenant.name, "tenants", ID_PATTERN, field="tenant.name")
        update = _update(request.tenant, tenant_id, list(request.update_mask.paths), TENANT_FIELDS,
                         request.tenant.etag, lambda m, p: getattr(m, p))
        return tenant_to_proto(await self._h.update_tenant(update))

    async def DeleteTenant(self, request: ten.DeleteTenantRequest, context: Context) -> Empty:
        await self._h.delete_tenant(cmd.Delete(parse_name(request.name, "tenants", ID_PATTERN), request.etag))
        return Empty()


def _site_value(message: pb.Site, path: str) -> Any:
    if path == "location":
        return location_from_proto(message.location, message.HasField("location"))
    if path == "labels":
        return dict(message.labels)
    if path == "time_zone":
        return message.time_zone or "UTC"
    return getattr(message, path)


class SiteServicer(site_grpc.SiteServiceServicer):
    def __init__(self, handlers: RegistryHandlers) -> None:
        self._h = handlers

    async def CreateSite(self, request: site.CreateSiteRequest, context: Context) -> pb.Site:
        s = request.site
        created = await self._h.create_site(current_principal(), cmd.CreateSite(
            site_id=request.site_id, display_name=s.display_name, address=s.address, time_zone=s.time_zone,
            location=location_from_proto(s.location, s.HasField("location")), labels=dict(s.labels)))
        return site_to_proto(created)

    async def GetSite(self, request: site.GetSiteRequest, context: Context) -> pb.Site:
        site_id = parse_name(request.name, "sites", ID_PATTERN)
        return site_to_proto(await self._h.get_site(current_principal(), site_id))

    async def ListSites(self, request: site.ListSitesRequest, context: Context) -> site.ListSitesResponse:
        sites, token = await self._h.list_sites(current_principal(), _list_params(request))
        return site.ListSitesResponse(sites=[site_to_proto(s) for s in sites], next_page_token=token)

    async def UpdateSite(self, request: site.UpdateSiteRequest, context: Context) -> pb.Site:
        site_id = parse_name(request.site.name, "sites", ID_PATTERN, field="site.name")
        update = _update(request.site, site_id, list(request.update_mask.paths), SITE_FIELDS, request.site.etag,
                         _site_value)
        return site_to_proto(await self._h.update_site(current_principal(), update))

    async def DeleteSite(self, request: site.DeleteSiteRequest, context: Context) -> Empty:
        site_id = parse_name(request.name, "sites", ID_PATTERN)
        await self._h.delete_site(current_principal(), cmd.Delete(site_id, request.etag))
        return Empty()


def _device_value(message: pb.Device, path: str) -> Any:
    if path == "location":
        return location_from_proto(message.location, message.HasField("location"))
    if path == "labels":
        return dict(message.labels)
    if path == "site":
        return _site_ref(message.site, "device.site")
    if path == "template":
        return _template_ref(message.template, "device.template")
    if path == "transports":
        return transports_from_proto(message.transports)
    return getattr(message, path)


def _device_id(name: str, field: str = "name") -> str:
    return parse_name(name, "devices", DEVICE_ID_PATTERN, field=field)


class DeviceServicer(dev_grpc.DeviceServiceServicer):
    def __init__(self, handlers: RegistryHandlers) -> None:
        self._h = handlers

    async def CreateDevice(self, request: dev.CreateDeviceRequest, context: Context) -> pb.Device:
        d = request.device
        created = await self._h.create_device(current_principal(), cmd.CreateDevice(
            display_name=d.display_name, site_id=_site_ref(d.site, "device.site"), labels=dict(d.labels),
            serial=d.serial, notes=d.notes, location=location_from_proto(d.location, d.HasField("location")),
            template_id=_template_ref(d.template, "device.template"),
            transports=transports_from_proto(d.transports)))
        return device_to_proto(created)

    async def GetDevice(self, request: dev.GetDeviceRequest, context: Context) -> pb.Device:
        return device_to_proto(await self._h.get_device(current_principal(), _device_id(request.name)))

    async def ListDevices(self, request: dev.ListDevicesRequest, context: Context) -> dev.ListDevicesResponse:
        devices, token = await self._h.list_devices(current_principal(), _list_params(request))
        return dev.ListDevicesResponse(devices=[device_to_proto(d) for d in devices], next_page_token=token)

    async def UpdateDevice(self, request: dev.UpdateDeviceRequest, context: Context) -> pb.Device:
        device_id = _device_id(request.device.name, "device.name")
        update = _update(request.device, device_id, list(request.update_mask.paths), DEVICE_FIELDS,
                         request.device.etag, _device_value)
        return device_to_proto(await self._h.update_device(current_principal(), update))

    async def DeleteDevice(self, request: dev.DeleteDeviceRequest, context: Context) -> Empty:
        await self._h.delete_device(current_principal(), cmd.Delete(_device_id(request.name), request.etag))
        return Empty()

    async def _change(self, request: Any, to: DeviceState) -> pb.Device:
        change = cmd.ChangeDeviceState(_device_id(request.name), to, request.etag, request.reason)
        return device_to_proto(await self._h.change_device_state(current_principal(), change))

    async def ActivateDevice(self, request: dev.ActivateDeviceRequest, context: Context) -> pb.Device:
        return await self._change(request, DeviceState.ACTIVE)

    async def SuspendDevice(self, request: dev.SuspendDeviceRequest, context: Context) -> pb.Device:
        return await self._change(request, DeviceState.SUSPENDED)

    async def RetireDevice(self, request: dev.RetireDeviceRequest, context: Context) -> pb.Device:
        return await self._change(request, DeviceState.RETIRED)


_ROLES = {tok.ROLE_VIEWER: Role.VIEWER, tok.ROLE_OPERATOR: Role.OPERATOR, tok.ROLE_ADMIN: Role.ADMIN,
          tok.ROLE_PLATFORM_ADMIN: Role.PLATFORM_ADMIN}


class TokenServicer(tok_grpc.TokenServiceServicer):
    def __init__(self, handlers: RegistryHandlers) -> None:
        self._h = handlers

    async def IssueOperatorToken(self, request: tok.IssueOperatorTokenRequest, context: Context) -> tok.OperatorToken:
        role = _ROLES.get(request.role)
        if role is None:
            raise InvalidArgument.field("role", "is required: ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN or "
                                        "ROLE_PLATFORM_ADMIN")
        if not request.subject.strip():
            raise InvalidArgument.field("subject", "is required: who the token is for")
        tenant = parse_name(request.tenant, "tenants", ID_PATTERN, field="tenant") if request.tenant else None
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else None
        token, expires = await self._h.issue_operator_token(current_principal(), cmd.IssueOperatorToken(
            tenant_id=tenant, role=role, subject=request.subject, ttl=ttl))
        return tok.OperatorToken(token=token, expire_time=timestamp_of(expires))
