"""The registry end to end over gRPC keeps tenants apart: another tenant's device and page tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import RPC_TIMEOUT, TenantTokens, bearer, create_tenant, rich_status

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import resources_pb2 as pb

from .registry_grpc_support import Code, create_device, fails
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import sites as sites  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

pytestmark = pytest.mark.platform


async def test_another_tenants_device_is_not_found_and_nothing_of_it_leaks(
        channel: grpc.aio.Channel, admin_token: str, devices: Devices,
        tenant: TenantTokens) -> None:
    other = await create_tenant(channel, admin_token)
    theirs = await create_device(devices, other.operator, display_name="Secret pump of B", serial="B-SERIAL-1")
    md = bearer(tenant.admin)
    refused = [
        devices.GetDevice(dev.GetDeviceRequest(name=theirs.name), metadata=md, timeout=RPC_TIMEOUT),
        devices.UpdateDevice(dev.UpdateDeviceRequest(device=pb.Device(name=theirs.name, display_name="pwned"),
                                                     update_mask=FieldMask(paths=["display_name"])),
                             metadata=md, timeout=RPC_TIMEOUT),
        devices.RetireDevice(dev.RetireDeviceRequest(name=theirs.name), metadata=md, timeout=RPC_TIMEOUT),
        devices.DeleteDevice(dev.DeleteDeviceRequest(name=theirs.name), metadata=md, timeout=RPC_TIMEOUT),
    ]
    for call in refused:
        error = await fails(call)
        assert error.code() is Code.NOT_FOUND
        shown = (error.details() or "") + rich_status(error).SerializeToString().decode("latin-1")
        for secret in (other.id, "Secret pump", "B-SERIAL-1"):
            assert secret not in shown
    listed = await devices.ListDevices(dev.ListDevicesRequest(filter='serial = "B-SERIAL-1"'), metadata=md,
                                       timeout=RPC_TIMEOUT)
    assert list(listed.devices) == []
    assert await devices.GetDevice(dev.GetDeviceRequest(name=theirs.name), metadata=bearer(other.viewer),
                                   timeout=RPC_TIMEOUT) == theirs


async def test_page_token_of_one_tenant_is_refused_for_another(
        channel: grpc.aio.Channel, admin_token: str, devices: Devices,
        tenant: TenantTokens) -> None:
    other = await create_tenant(channel, admin_token)
    for _ in range(2):
        await create_device(devices, tenant.operator)
    page = await devices.ListDevices(dev.ListDevicesRequest(page_size=1), metadata=bearer(tenant.viewer),
                                     timeout=RPC_TIMEOUT)
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(page_size=1, page_token=page.next_page_token),
                                             metadata=bearer(other.viewer), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
