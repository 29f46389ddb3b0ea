"""The registry end to end over gRPC authenticates every call and enforces roles: missing, malformed,
expired and forged tokens; what viewers, operators, tenant and platform admins may not do."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import RPC_TIMEOUT, PlatformLike, TenantTokens, bearer, error_reason, expired_token, issue_token, unique_id

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.runtime.auth import Role, TokenCodec

from .registry_grpc_support import Code, create_device, fails
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import sites as sites  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices, Sites

pytestmark = pytest.mark.platform


async def test_no_token_is_unauthenticated(devices: Devices) -> None:
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(), timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_MISSING"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt"])
async def test_malformed_authorization_is_unauthenticated(devices: Devices, header: str) -> None:
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(), metadata=(("authorization", header),),
                                             timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED


async def test_expired_token_is_unauthenticated(platform: PlatformLike, devices: Devices,
                                                tenant: TenantTokens) -> None:
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(),
                                             metadata=bearer(expired_token(platform, tenant.id)), timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_EXPIRED"


async def test_token_signed_with_another_key_is_unauthenticated(devices: Devices,
                                                                tenant: TenantTokens) -> None:
    forged, _ = TokenCodec(b"f" * 64).issue(subject="mallory", role=Role.ADMIN, tenant=tenant.id,
                                            ttl=timedelta(hours=1))
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(), metadata=bearer(forged), timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_INVALID"


async def test_viewer_writes_are_permission_denied(devices: Devices,
                                                   sites: Sites, tenant: TenantTokens) -> None:
    device = await create_device(devices, tenant.operator, display_name="before")
    md = bearer(tenant.viewer)
    calls = [
        devices.CreateDevice(dev.CreateDeviceRequest(device=pb.Device()), metadata=md, timeout=RPC_TIMEOUT),
        devices.UpdateDevice(dev.UpdateDeviceRequest(device=pb.Device(name=device.name, display_name="after"),
                                                     update_mask=FieldMask(paths=["display_name"])),
                             metadata=md, timeout=RPC_TIMEOUT),
        devices.ActivateDevice(dev.ActivateDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT),
        devices.DeleteDevice(dev.DeleteDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT),
        sites.CreateSite(site.CreateSiteRequest(site_id="plant-1", site=pb.Site(display_name="x")), metadata=md,
                         timeout=RPC_TIMEOUT),
    ]
    for call in calls:
        error = await fails(call)
        assert error.code() is Code.PERMISSION_DENIED
        assert error_reason(error) == "ROLE_TOO_LOW"
    assert await devices.GetDevice(dev.GetDeviceRequest(name=device.name), metadata=md,
                                   timeout=RPC_TIMEOUT) == device
    listed = await devices.ListDevices(dev.ListDevicesRequest(), metadata=md, timeout=RPC_TIMEOUT)
    assert [d.name for d in listed.devices] == [device.name]


async def test_operator_cannot_delete_or_retire(devices: Devices, tenant: TenantTokens) -> None:
    device = await create_device(devices, tenant.operator)
    md = bearer(tenant.operator)
    for call in (devices.DeleteDevice(dev.DeleteDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT),
                 devices.RetireDevice(dev.RetireDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)):
        assert (await fails(call)).code() is Code.PERMISSION_DENIED


async def test_platform_admin_needs_a_tenant_token_for_tenant_data(devices: Devices,
                                                                   admin_token: str) -> None:
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(), metadata=bearer(admin_token),
                                             timeout=RPC_TIMEOUT))
    assert error.code() is Code.PERMISSION_DENIED
    assert error_reason(error) == "TENANT_REQUIRED"


async def test_tenant_admin_cannot_mint_a_platform_admin_token(channel: grpc.aio.Channel,
                                                               tenant: TenantTokens) -> None:
    error = await fails(issue_token(channel, tenant.admin, tenant=None, role=Role.PLATFORM_ADMIN))
    assert error.code() is Code.PERMISSION_DENIED


async def test_tenant_users_cannot_manage_tenants(channel: grpc.aio.Channel, tenant: TenantTokens) -> None:
    stub = ten_grpc.TenantServiceStub(channel)
    error = await fails(stub.CreateTenant(ten.CreateTenantRequest(tenant_id=unique_id(), tenant=pb.Tenant(
        display_name="x")), metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT))
    assert error.code() is Code.PERMISSION_DENIED
    own = await stub.GetTenant(ten.GetTenantRequest(name=tenant.name), metadata=bearer(tenant.viewer),
                               timeout=RPC_TIMEOUT)
    assert own.name == tenant.name
