"""The registry end to end over gRPC: the running service, its interceptor, PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import nats
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import (
    RPC_TIMEOUT,
    PlatformLike,
    TenantTokens,
    bearer,
    create_tenant,
    error_reason,
    expired_token,
    field_violations,
    issue_token,
    rich_status,
    service_nats_url,
    unique_id,
)
from nats.errors import TimeoutError as NatsTimeoutError

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site
from muster.registry.v1 import site_service_pb2_grpc as site_grpc
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.runtime.auth import Role, TokenCodec
from muster.runtime.bus import EVENTS_STREAM

pytestmark = pytest.mark.platform

Code = grpc.StatusCode


if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi
    Devices = dev_grpc.DeviceServiceAsyncStub
    Sites = site_grpc.SiteServiceAsyncStub

@pytest.fixture(scope="module")
async def channel(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["registry"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@pytest.fixture(scope="module")
def admin_token(platform: PlatformLike) -> str:
    return str(platform.endpoints["admin_token"])


@pytest.fixture
async def tenant(channel: grpc.aio.Channel, admin_token: str) -> TenantTokens:
    return await create_tenant(channel, admin_token)


@pytest.fixture
def devices(channel: grpc.aio.Channel) -> Devices:
    return dev_grpc.DeviceServiceStub(channel)


@pytest.fixture
def sites(channel: grpc.aio.Channel) -> Sites:
    return site_grpc.SiteServiceStub(channel)


async def _create(devices: Devices, token: str, **fields: object) -> pb.Device:
    return await devices.CreateDevice(dev.CreateDeviceRequest(device=pb.Device(**fields)),  # type: ignore[arg-type]
                                      metadata=bearer(token), timeout=RPC_TIMEOUT)


async def _fails(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# --- happy paths -------------------------------------------------------------------------------------

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
    error = await _fails(sites.GetSite(site.GetSiteRequest(name="sites/plant-1"), metadata=md, timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND


async def test_device_create_get_list_update_delete(devices: Devices,
                                                    sites: Sites, tenant: TenantTokens) -> None:
    await sites.CreateSite(site.CreateSiteRequest(site_id="plant-1", site=pb.Site(display_name="Plant")),
                           metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    created = await _create(devices, tenant.operator, display_name="Pump 7", serial="SN-7", site="sites/plant-1",
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
    error = await _fails(devices.GetDevice(dev.GetDeviceRequest(name=created.name), metadata=bearer(tenant.admin),
                                           timeout=RPC_TIMEOUT))
    assert error.code() is Code.NOT_FOUND


async def test_lifecycle_and_an_invalid_transition(devices: Devices, tenant: TenantTokens) -> None:
    device = await _create(devices, tenant.operator)
    md = bearer(tenant.admin)
    active = await devices.ActivateDevice(dev.ActivateDeviceRequest(name=device.name, etag=device.etag),
                                          metadata=md, timeout=RPC_TIMEOUT)
    suspended = await devices.SuspendDevice(dev.SuspendDeviceRequest(name=device.name, reason="maintenance"),
                                            metadata=md, timeout=RPC_TIMEOUT)
    retired = await devices.RetireDevice(dev.RetireDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    assert [active.state, suspended.state, retired.state] == [pb.DEVICE_STATE_ACTIVE, pb.DEVICE_STATE_SUSPENDED,
                                                              pb.DEVICE_STATE_RETIRED]
    assert retired.etag == '"4"'
    error = await _fails(devices.ActivateDevice(dev.ActivateDeviceRequest(name=device.name), metadata=md,
                                                timeout=RPC_TIMEOUT))
    assert error.code() is Code.FAILED_PRECONDITION
    assert error_reason(error) == "INVALID_STATE_TRANSITION"
    assert "RETIRED" in (error.details() or "")


async def test_delete_site_with_devices_is_failed_precondition(devices: Devices,
                                                               sites: Sites,
                                                               tenant: TenantTokens) -> None:
    await sites.CreateSite(site.CreateSiteRequest(site_id="plant-1", site=pb.Site(display_name="Plant")),
                           metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT)
    await _create(devices, tenant.operator, site="sites/plant-1")
    error = await _fails(sites.DeleteSite(site.DeleteSiteRequest(name="sites/plant-1"), metadata=bearer(tenant.admin),
                                          timeout=RPC_TIMEOUT))
    assert error.code() is Code.FAILED_PRECONDITION
    assert (error.details() or "").startswith("1 device(s)")


# --- refusals ----------------------------------------------------------------------------------------

async def test_stale_etag_is_aborted_and_the_device_keeps_the_winning_write(
        devices: Devices, tenant: TenantTokens) -> None:
    device = await _create(devices, tenant.operator, display_name="v1")
    md = bearer(tenant.operator)
    mask = FieldMask(paths=["display_name"])
    winner = await devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, display_name="v2", etag=device.etag), update_mask=mask),
        metadata=md, timeout=RPC_TIMEOUT)
    error = await _fails(devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, display_name="v3", etag=device.etag), update_mask=mask),
        metadata=md, timeout=RPC_TIMEOUT))
    assert error.code() is Code.ABORTED
    assert error_reason(error) == "ETAG_MISMATCH"
    current = await devices.GetDevice(dev.GetDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)
    assert current == winner


async def test_bad_filter_is_invalid_argument_with_a_bad_request_violation(
        devices: Devices, tenant: TenantTokens) -> None:
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(filter="colour = red"),
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
    device = await _create(devices, tenant.operator)
    error = await _fails(devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, serial="changed"), update_mask=FieldMask(paths=paths)),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert named in (error.details() or "")
    assert list(field_violations(error)) == ["update_mask"]


@pytest.mark.parametrize("name", ["devices/../x", "devices/", "sites/abc", "devices/UPPERCASE0123456789AB",
                                  "devices/abc/def", ""])
async def test_malformed_device_name_is_invalid_argument(devices: Devices,
                                                         tenant: TenantTokens, name: str) -> None:
    error = await _fails(devices.GetDevice(dev.GetDeviceRequest(name=name), metadata=bearer(tenant.viewer),
                                           timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["name"]


async def test_no_token_is_unauthenticated(devices: Devices) -> None:
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(), timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_MISSING"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt"])
async def test_malformed_authorization_is_unauthenticated(devices: Devices, header: str) -> None:
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(), metadata=(("authorization", header),),
                                             timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED


async def test_expired_token_is_unauthenticated(platform: PlatformLike, devices: Devices,
                                                tenant: TenantTokens) -> None:
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(),
                                             metadata=bearer(expired_token(platform, tenant.id)), timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_EXPIRED"


async def test_token_signed_with_another_key_is_unauthenticated(devices: Devices,
                                                                tenant: TenantTokens) -> None:
    forged, _ = TokenCodec(b"f" * 64).issue(subject="mallory", role=Role.ADMIN, tenant=tenant.id,
                                            ttl=timedelta(hours=1))
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(), metadata=bearer(forged), timeout=RPC_TIMEOUT))
    assert error.code() is Code.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_INVALID"


async def test_viewer_writes_are_permission_denied(devices: Devices,
                                                   sites: Sites, tenant: TenantTokens) -> None:
    device = await _create(devices, tenant.operator, display_name="before")
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
        error = await _fails(call)
        assert error.code() is Code.PERMISSION_DENIED
        assert error_reason(error) == "ROLE_TOO_LOW"
    assert await devices.GetDevice(dev.GetDeviceRequest(name=device.name), metadata=md,
                                   timeout=RPC_TIMEOUT) == device
    listed = await devices.ListDevices(dev.ListDevicesRequest(), metadata=md, timeout=RPC_TIMEOUT)
    assert [d.name for d in listed.devices] == [device.name]


async def test_operator_cannot_delete_or_retire(devices: Devices, tenant: TenantTokens) -> None:
    device = await _create(devices, tenant.operator)
    md = bearer(tenant.operator)
    for call in (devices.DeleteDevice(dev.DeleteDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT),
                 devices.RetireDevice(dev.RetireDeviceRequest(name=device.name), metadata=md, timeout=RPC_TIMEOUT)):
        assert (await _fails(call)).code() is Code.PERMISSION_DENIED


async def test_platform_admin_needs_a_tenant_token_for_tenant_data(devices: Devices,
                                                                   admin_token: str) -> None:
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(), metadata=bearer(admin_token),
                                             timeout=RPC_TIMEOUT))
    assert error.code() is Code.PERMISSION_DENIED
    assert error_reason(error) == "TENANT_REQUIRED"


async def test_tenant_admin_cannot_mint_a_platform_admin_token(channel: grpc.aio.Channel,
                                                               tenant: TenantTokens) -> None:
    error = await _fails(issue_token(channel, tenant.admin, tenant=None, role=Role.PLATFORM_ADMIN))
    assert error.code() is Code.PERMISSION_DENIED


async def test_tenant_users_cannot_manage_tenants(channel: grpc.aio.Channel, tenant: TenantTokens) -> None:
    stub = ten_grpc.TenantServiceStub(channel)
    error = await _fails(stub.CreateTenant(ten.CreateTenantRequest(tenant_id=unique_id(), tenant=pb.Tenant(
        display_name="x")), metadata=bearer(tenant.admin), timeout=RPC_TIMEOUT))
    assert error.code() is Code.PERMISSION_DENIED
    own = await stub.GetTenant(ten.GetTenantRequest(name=tenant.name), metadata=bearer(tenant.viewer),
                               timeout=RPC_TIMEOUT)
    assert own.name == tenant.name


# --- tenant isolation --------------------------------------------------------------------------------

async def test_another_tenants_device_is_not_found_and_nothing_of_it_leaks(
        channel: grpc.aio.Channel, admin_token: str, devices: Devices,
        tenant: TenantTokens) -> None:
    other = await create_tenant(channel, admin_token)
    theirs = await _create(devices, other.operator, display_name="Secret pump of B", serial="B-SERIAL-1")
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
        error = await _fails(call)
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
        await _create(devices, tenant.operator)
    page = await devices.ListDevices(dev.ListDevicesRequest(page_size=1), metadata=bearer(tenant.viewer),
                                     timeout=RPC_TIMEOUT)
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(page_size=1, page_token=page.next_page_token),
                                             metadata=bearer(other.viewer), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT


# --- pagination --------------------------------------------------------------------------------------

async def test_pages_of_two_neither_repeat_nor_skip_while_devices_are_added(
        devices: Devices, tenant: TenantTokens) -> None:
    originals = [(await _create(devices, tenant.operator, display_name=f"orig-{i}")).name for i in range(5)]
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
        await _create(devices, tenant.operator, display_name=f"added-{pages}")
    assert [name for name in seen if name in originals] == originals
    assert len(seen) == len(set(seen))


async def test_page_token_reused_with_a_different_filter_is_invalid_argument(
        devices: Devices, tenant: TenantTokens) -> None:
    for _ in range(3):
        await _create(devices, tenant.operator, labels={"env": "prod"})
    first = await devices.ListDevices(dev.ListDevicesRequest(page_size=1, filter='labels.env = "prod"'),
                                      metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert first.next_page_token
    error = await _fails(devices.ListDevices(dev.ListDevicesRequest(
        page_size=1, page_token=first.next_page_token, filter='labels.env = "dev"'),
        metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT))
    assert error.code() is Code.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["page_token"]


# --- events ------------------------------------------------------------------------------------------

async def test_every_device_create_publishes_device_created_with_its_event_id_as_msg_id(
        platform: PlatformLike, devices: Devices, tenant: TenantTokens) -> None:
    created = {(await _create(devices, tenant.operator, serial=f"EV-{i}")).name for i in range(3)}
    nc = await nats.connect(service_nats_url(platform))
    try:
        js = nc.jetstream()
        subject = f"muster.events.registry.{tenant.id}.DeviceCreated"
        sub = await js.pull_subscribe(subject, durable=None, stream=EVENTS_STREAM)
        events: list[Event] = []
        deadline = time.monotonic() + 15
        while len(events) < len(created) and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(10, timeout=1.0)
            except NatsTimeoutError:
                continue
            for msg in msgs:
                event = Event.FromString(msg.data)
                assert msg.subject == subject
                assert msg.headers is not None and msg.headers.get("Nats-Msg-Id") == event.id
                events.append(event)
                await msg.ack()
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert len(events) == len(created), f"got {len(events)} DeviceCreated events for {len(created)} creates"
    names = set()
    for event in events:
        assert (event.type, event.tenant, event.source) == ("DeviceCreated", tenant.id, "registry")
        payload = ev.DeviceCreated()
        assert event.payload.Unpack(payload)
        assert event.subject == payload.device.name
        names.add(payload.device.name)
    assert names == created
    assert len({e.id for e in events}) == len(events)
