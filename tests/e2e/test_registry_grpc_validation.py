"""The registry end to end over gRPC refuses bad input with rich errors: stale etags, bad filters, update
masks and resource names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import RPC_TIMEOUT, TenantTokens, bearer, error_reason, field_violations, rich_status

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


async def test_stale_etag_is_aborted_and_the_device_keeps_the_winning_write(
        devices: Devices, tenant: TenantTokens) -> None:
    device = await create_device(devices, tenant.operator, display_name="v1")
    md = bearer(tenant.operator)
    mask = FieldMask(paths=["display_name"])
    winner = await devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, display_name="v2", etag=device.etag), update_mask=mask),
        metadata=md, timeout=RPC_TIMEOUT)
    error = await fails(devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, display_name="v3", etag=device.etag), update_mask=mask),
        metadata=md, timeout=RPC_TIMEOUT))
    assert error.code() is Code.ABORTED
    assert error_reason(error) == "ETAG_MISMATCH"
    current = await devices.GetDevice(dev.GetDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    assert current == winner


async def test_bad_filter_is_invalid_argument_with_a_bad_request_violation(
        devices: Devices, tenant: TenantTokens) -> None:
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(filter="colour = red"),
                                             metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    violations = field_violations(error)
    assert list(violations) == ["filter"]
    assert 'unknown field "colour"' in violations["filter"]
    status = rich_status(error)
    assert status.code == Code.INVALID_ARGUMENT.value[0] and status.message == error.details()


@pytest.mark.parametrize(("paths", "named"), [(["colour"], "colour"), (["serial"], "serial"),
                                              (["labels.env"], "labels.env"), ([], "update_mask")])
async def test_invalid_update_mask_is_invalid_argument_naming_the_path(
        devices: Devices, tenant: TenantTokens, paths: list[str], named: str) -> None:
    device = await create_device(devices, tenant.operator)
    error = await fails(devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, serial="changed"), update_mask=FieldMask(paths=paths)),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert named in (error.details() or "")
    assert list(field_violations(error)) == ["update_mask"]


@pytest.mark.parametrize("name", ["devices/../x", "devices/", "sites/abc", "devices/UPPERCASE0123456789AB",
                                  "devices/abc/def", ""])
async def test_malformed_device_name_is_invalid_argument(devices: Devices,
                                                         tenant: TenantTokens, name: str) -> None:
    error = await fails(devices.GetDevice(dev.GetDeviceRequest(name=name), metadata=bearer(tenant.viewer),
                                           timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["name"]
