"""The registry end to end over gRPC pages consistently: no repeats or gaps while devices are added, page
tokens bound to their filter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from helpers import RPC_TIMEOUT, TenantTokens, bearer, field_violations

from muster.registry.v1 import device_service_pb2 as dev

from .registry_grpc_support import Code, create_device, fails
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import sites as sites  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

pytestmark = pytest.mark.platform


async def test_pages_of_two_neither_repeat_nor_skip_while_devices_are_added(
        devices: Devices, tenant: TenantTokens) -> None:
    originals = [(await create_device(devices, tenant.operator, display_name=f"orig-{i}")).name for i in range(5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        response = await devices.ListDevices(dev.ListDevicesRequest(page_size=2, page_token=token),
                                             metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
        assert len(response.devices) <= 2
        seen.extend(d.name for d in response.devices)
        token = response.next_page_token
        pages += 1
        if not token:
            break
        assert pages < 20
        await create_device(devices, tenant.operator, display_name=f"added-{pages}")
    assert [name for name in seen if name in originals] == originals
    assert len(seen) == len(set(seen))


async def test_page_token_reused_with_a_different_filter_is_invalid_argument(
        devices: Devices, tenant: TenantTokens) -> None:
    for _ in range(3):
        await create_device(devices, tenant.operator, labels={"env": "prod"})
    first = await devices.ListDevices(dev.ListDevicesRequest(page_size=1, filter='labels.env = "prod"'),
                                      metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert first.next_page_token
    error = await fails(devices.ListDevices(dev.ListDevicesRequest(
        page_size=1, page_token=first.next_page_token, filter='labels.env = "dev"'),
        metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["page_token"]
