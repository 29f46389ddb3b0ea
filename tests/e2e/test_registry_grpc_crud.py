"""The registry end to end over gRPC, happy paths: sites and devices through create, get, list, update,
lifecycle and delete on the running service, PostgreSQL behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import RPC_TIMEOUT, TenantTokens, bearer, error_reason

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site

from .registry_grpc_support import Code, create_device, fails
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import sites as sites  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .registry_grpc_support import Devices, Sites

pytestmark = pytest.mark.platform


async def test_site_create_get_list_update_delete(sites: Sites, tenant: TenantTokens) -> None:
    md = bearer(tenant.admin)
    created = await sites.CreateSite(site.CreateSiteRequest(site_id="plant-1", site=pb.Site(
        display_name="Plant 1", time_zone="Europe/Berlin", labels={"env": "prod"},
        location=pb.Location(latitude=52.5, longitude=13.4))), metadata=md, timeout=RPC_TIMEOUT)
    assert (created.name, created.time_zone, created.etag) == ("sites/plant-1", "Europe/Berlin", '"1"')
    assert await sites.GetSite(site.GetSiteRequest(name="sites/plant-1"), metadata=bearer(tenant.viewer),
                               timeout=RPC_TIMEOUT) == created
    listed = await sites.ListSites(site.ListSitesRequest(), metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert [s.name for s in listed.sites] == ["sites/plant-1"]
    updated = await sites.UpdateSite(site.UpdateSiteRequest(
        site=pb.Site(name="sites/plant-1", display_name="Plant One", time_zone="Asia/Tokyo", etag=created.etag),
        update_mask=FieldMask(paths=["display_name"])), metadata=md, timeout=RPC_TIMEOUT)
    assert (updated.display_name, updated.time_zone, updated.etag) == ("Plant One", "Europe/Berlin", '"2"')
    assert dict(updated.labels) == {"env": "prod"} and updated.location.latitude == 52.5
    await sites.DeleteSite(site.DeleteSiteRequest(name="sites/plant-1", etag=updated.etag), metadata=md,
                           timeout=RPC_TIMEOUT)
    error = await fails(sites.GetSite(site.GetSiteRequest(name="sites/plant-1"), metadata=md, timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND


async def test_device_create_get_list_update_delete(devices: Devices,
                                                    sites: Sites, tenant: TenantTokens) -> None:
    await sites.CreateSite(site.CreateSiteRequest(site_id="plant-1", site=pb.Site(display_name="Plant")),
                           metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    created = await create_device(devices, tenant.operator, display_name="Pump 7", serial="SN-7", site="sites/plant-1",
                            labels={"env": "prod"}, notes="basement")
    assert created.name.startswith("devices/") and len(created.name) == len("devices/") + 20
    assert (created.state, created.etag, created.site) == (pb.DEVICE_STATE_PROVISIONED, '"1"', "sites/plant-1")
    got = await devices.GetDevice(dev.GetDeviceRequest(name=created.name), metadata=bearer(tenant.viewer),
                                  timeout=RPC_TIMEOUT)
    assert got == created
    listed = await devices.ListDevices(dev.ListDevicesRequest(filter='labels.env = "prod"'),
                                       metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert [d.name for d in listed.devices] == [created.name] and listed.next_page_token == ""

    updated = await devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=created.name, display_name="Pump Seven", notes="ignored: not in the mask",
                         etag=created.etag),
        update_mask=FieldMask(paths=["display_name"])), metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert (updated.display_name, updated.notes, updated.etag) == ("Pump Seven", "basement", '"2"')
    assert updated.update_time.ToDatetime() > created.update_time.ToDatetime()
    assert updated.create_time == created.create_time

    moved = await devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=created.name, site=""), update_mask=FieldMask(paths=["site"])),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert moved.site == ""

    await devices.DeleteDevice(dev.DeleteDeviceRequest(name=created.name, etag=moved.etag),
                               metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    error = await fails(devices.GetDevice(dev.GetDeviceRequest(name=created.name), metadata=bearer(tenant.admin),
                                           timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND


async def test_lifecycle_and_an_invalid_transition(devices: Devices, tenant: TenantTokens) -> None:
    device = await create_device(devices, tenant.operator)
    md = bearer(tenant.admin)
    active = await devices.ActivateDevice(dev.ActivateDeviceRequest(name=device.name, etag=device.etag),
                                          metadata=md, timeout=RPC_TIMEOUT)
    suspended = await devices.SuspendDevice(dev.SuspendDeviceRequest(name=device.name, reason="maintenance"),
                                            metadata=md, timeout=RPC_TIMEOUT)
    retired = await devices.RetireDevice(dev.RetireDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    assert [active.state, suspended.state, retired.state] == [pb.DEVICE_STATE_ACTIVE, pb.DEVICE_STATE_SUSPENDED,
                                                              pb.DEVICE_STATE_RETIRED]
    assert retired.etag == '"4"'
    error = await fails(devices.ActivateDevice(dev.ActivateDeviceRequest(name=device.name), metadata=md,
                                                timeout=RPC_TIMEOUT))
    assert error.code() is Code.FAILED_PRECONDITION
    assert error_reason(error) == "INVALID_STATE_TRANSITION"
    assert "RETIRED" in (error.details() or "")


async def test_delete_site_with_devices_is_failed_precondition(devices: Devices,
                                                               sites: Sites,
                                                               tenant: TenantTokens) -> None:
    await sites.CreateSite(site.CreateSiteRequest(site_id="plant-1", site=pb.Site(display_name="Plant")),
                           metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    await create_device(devices, tenant.operator, site="sites/plant-1")
    error = await fails(sites.DeleteSite(site.DeleteSiteRequest(name="sites/plant-1"), metadata=bearer(tenant.admin),
                                          timeout=RPC_TIMEOUT))
    assert error.code() is Code.FAILED_PRECONDITION
    assert (error.details() or "").startswith("1 device(s)")
