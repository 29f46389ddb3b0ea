"""Groups and device transports through gRPC against the running registry (real PostgreSQL, NATS):
static groups with bulk membership (all or nothing), dynamic groups resolved on read, a device's
groups of both kinds, memberships gone with their device, roles, tenancy, and transports with a
validated, per-tenant-unique ICCID."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import RPC_TIMEOUT, TenantTokens, bearer, create_tenant, error_reason, field_violations

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import group_resources_pb2 as gpb
from muster.registry.v1 import group_service_pb2 as grp
from muster.registry.v1 import group_service_pb2_grpc as grp_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import transports_pb2 as tpb

from .registry_grpc_support import Code, create_device, fails
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import devices as devices  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform

if TYPE_CHECKING:
    from .registry_grpc_support import Devices

    Groups = grp_grpc.GroupServiceAsyncStub

SIM = "89014103211118510720"


@pytest.fixture
def groups(channel: grpc.aio.Channel) -> Groups:
    return grp_grpc.GroupServiceStub(channel)


async def _group(groups: Groups, token: str, group_id: str = "", **fields: object) -> gpb.Group:
    return await groups.CreateGroup(grp.CreateGroupRequest(group_id=group_id, group=gpb.Group(**fields)),  # type: ignore[arg-type]
                                    metadata=bearer(token), timeout=RPC_TIMEOUT)


async def _members(groups: Groups, token: str, group: str, **fields: object) -> list[str]:
    names: list[str] = []
    request = grp.ListGroupMembersRequest(group=group, **fields)  # type: ignore[arg-type]
    while True:
        page = await groups.ListGroupMembers(request, metadata=bearer(token), timeout=RPC_TIMEOUT)
        names += [d.name for d in page.devices]
        if not page.next_page_token:
            return names
        request.page_token = page.next_page_token


async def _device_groups(groups: Groups, token: str, device: str, page_size: int = 0) -> list[str]:
    names: list[str] = []
    request = grp.ListDeviceGroupsRequest(device=device, page_size=page_size)
    while True:
        page = await groups.ListDeviceGroups(request, metadata=bearer(token), timeout=RPC_TIMEOUT)
        names += [g.name for g in page.groups]
        if not page.next_page_token:
            return names
        request.page_token = page.next_page_token


async def test_static_group_membership_in_bulk(groups: Groups, devices: Devices, tenant: TenantTokens) -> None:
    d1, d2, d3 = [await create_device(devices, tenant.operator, display_name=f"d{i}") for i in range(3)]
    pumps = await _group(groups, tenant.operator, "pumps", display_name="Pumps", labels={"team": "ops"})
    assert (pumps.name, pumps.type, pumps.etag) == ("groups/pumps", gpb.GROUP_TYPE_STATIC, '"1"')

    added = await groups.AddGroupMembers(grp.AddGroupMembersRequest(group=pumps.name, devices=[d1.name, d2.name]),
                                         metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert list(added.added_devices) == [d1.name, d2.name]
    again = await groups.AddGroupMembers(grp.AddGroupMembersRequest(group=pumps.name, devices=[d2.name, d3.name]),
                                         metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert list(again.added_devices) == [d3.name]

    refused = await fails(groups.AddGroupMembers(
        grp.AddGroupMembersRequest(group=pumps.name, devices=[d1.name, "devices/" + "z" * 20, "sites/x"]),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert refused.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(refused)) == {"devices[2]"}  # malformed names are refused first
    refused = await fails(groups.AddGroupMembers(
        grp.AddGroupMembersRequest(group=pumps.name, devices=["devices/" + "z" * 20]),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert set(field_violations(refused)) == {"devices[0]"}

    assert await _members(groups, tenant.viewer, pumps.name, page_size=2) == [d1.name, d2.name, d3.name]
    removed = await groups.RemoveGroupMembers(grp.RemoveGroupMembersRequest(group=pumps.name, devices=[d2.name]),
                                              metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert list(removed.removed_devices) == [d2.name]
    assert await _device_groups(groups, tenant.viewer, d2.name) == []
    assert await _device_groups(groups, tenant.viewer, d1.name) == [pumps.name]

    await devices.DeleteDevice(dev.DeleteDeviceRequest(name=d1.name), metadata=bearer(tenant.admin),
                               timeout=RPC_TIMEOUT)
    assert await _members(groups, tenant.viewer, pumps.name) == [d3.name]


async def test_dynamic_groups_resolve_on_read(groups: Groups, devices: Devices, tenant: TenantTokens) -> None:
    floor3 = [await create_device(devices, tenant.operator, labels={"floor": "3"}) for _ in range(3)]
    await create_device(devices, tenant.operator, labels={"floor": "4"})
    dynamic = await _group(groups, tenant.operator, "floor-3", display_name="Floor 3",
                           type=gpb.GROUP_TYPE_DYNAMIC, filter='labels.floor = "3"')
    static = await _group(groups, tenant.operator, "watch", display_name="Watch list")
    await groups.AddGroupMembers(grp.AddGroupMembersRequest(group=static.name, devices=[floor3[0].name]),
                                 metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)

    assert await _members(groups, tenant.viewer, dynamic.name, page_size=2) == [d.name for d in floor3]
    late = await create_device(devices, tenant.operator, display_name="late", labels={"floor": "3"})
    assert await _members(groups, tenant.viewer, dynamic.name) == [*(d.name for d in floor3), late.name]
    assert await _members(groups, tenant.viewer, dynamic.name, filter='display_name = "late"') == [late.name]
    assert await _device_groups(groups, tenant.viewer, floor3[0].name, page_size=1) == [dynamic.name, static.name]

    refused = await fails(groups.AddGroupMembers(grp.AddGroupMembersRequest(group=dynamic.name,
                                                                            devices=[late.name]),
                                                 metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert (refused.code(), error_reason(refused)) == (Code.FAILED_PRECONDITION, "GROUP_IS_DYNAMIC")
    bad = await fails(groups.UpdateGroup(grp.UpdateGroupRequest(
        group=gpb.Group(name=dynamic.name, filter="floor = 3", etag=dynamic.etag),
        update_mask=FieldMask(paths=["filter"])), metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert bad.code() == Code.INVALID_ARGUMENT and set(field_violations(bad)) == {"group.filter"}
    bad = await fails(_group(groups, tenant.operator, display_name="x", type=gpb.GROUP_TYPE_DYNAMIC))
    assert set(field_violations(bad)) == {"group.filter"}

    moved = await groups.UpdateGroup(grp.UpdateGroupRequest(
        group=gpb.Group(name=dynamic.name, filter='labels.floor = "4"', etag=dynamic.etag),
        update_mask=FieldMask(paths=["filter"])), metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert moved.etag == '"2"'
    stale = await fails(groups.DeleteGroup(grp.DeleteGroupRequest(name=dynamic.name, etag=dynamic.etag),
                                           metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert stale.code() == Code.ABORTED
    listed = await groups.ListGroups(grp.ListGroupsRequest(filter="type = DYNAMIC"), metadata=bearer(tenant.viewer),
                                     timeout=RPC_TIMEOUT)
    assert [g.name for g in listed.groups] == [dynamic.name]
    await groups.DeleteGroup(grp.DeleteGroupRequest(name=dynamic.name, etag=moved.etag),
                             metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert await _device_groups(groups, tenant.viewer, floor3[0].name) == [static.name]


async def test_viewers_read_groups_operators_manage_them(groups: Groups, tenant: TenantTokens) -> None:
    denied = await fails(_group(groups, tenant.viewer, display_name="nope"))
    assert denied.code() == Code.PERMISSION_DENIED
    created = await _group(groups, tenant.operator, display_name="ok")
    got = await groups.GetGroup(grp.GetGroupRequest(name=created.name), metadata=bearer(tenant.viewer),
                                timeout=RPC_TIMEOUT)
    assert got == created


async def test_tenants_never_see_each_others_groups_or_members(
        groups: Groups, devices: Devices, channel: grpc.aio.Channel, admin_token: str, tenant: TenantTokens) -> None:
    other = await create_tenant(channel, admin_token)
    ours = await create_device(devices, tenant.operator)
    theirs = await create_device(devices, other.operator)
    group = await _group(groups, tenant.operator, "shared-id", display_name="A's")
    await groups.AddGroupMembers(grp.AddGroupMembersRequest(group=group.name, devices=[ours.name]),
                                 metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)

    refused = await fails(groups.AddGroupMembers(grp.AddGroupMembersRequest(group=group.name,
                                                                            devices=[ours.name, theirs.name]),
                                                 metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert refused.code() == Code.INVALID_ARGUMENT and set(field_violations(refused)) == {"devices[1]"}
    for call in (groups.GetGroup(grp.GetGroupRequest(name=group.name), metadata=bearer(other.admin),
                                 timeout=RPC_TIMEOUT),
                 groups.ListGroupMembers(grp.ListGroupMembersRequest(group=group.name), metadata=bearer(other.admin),
                                         timeout=RPC_TIMEOUT),
                 groups.ListDeviceGroups(grp.ListDeviceGroupsRequest(device=ours.name), metadata=bearer(other.admin),
                                         timeout=RPC_TIMEOUT)):
        assert (await fails(call)).code() == Code.NOT_FOUND
    listed = await groups.ListGroups(grp.ListGroupsRequest(), metadata=bearer(other.admin), timeout=RPC_TIMEOUT)
    assert list(listed.groups) == []
    # The same id is free in the other tenant, and its group stays its own.
    await _group(groups, other.operator, "shared-id", display_name="B's")
    assert await _members(groups, other.viewer, group.name) == []
    assert await _members(groups, tenant.viewer, group.name) == [ours.name]


async def test_transports_with_a_validated_unique_iccid(devices: Devices, channel: grpc.aio.Channel,
                                                        admin_token: str, tenant: TenantTokens) -> None:
    lte = tpb.Transport(protocol=tpb.TRANSPORT_PROTOCOL_MQTT, cellular=tpb.CellularLink(
        iccid=SIM, imei="490154203237518", apn="iot.example.com", carrier="Acme"))
    wired = tpb.Transport(protocol=tpb.TRANSPORT_PROTOCOL_MODBUS_TCP,
                          ethernet=tpb.EthernetLink(mac_address="00:1a:2b:3c:4d:5e"))
    device = await create_device(devices, tenant.operator, transports=[lte])
    assert list(device.transports) == [lte]

    bad = tpb.Transport(protocol=tpb.TRANSPORT_PROTOCOL_MQTT, cellular=tpb.CellularLink(iccid=SIM[:-1] + "1"))
    refused = await fails(devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, transports=[wired, bad]), update_mask=FieldMask(paths=["transports"])),
        metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT))
    assert refused.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(refused)) == {"device.transports[1].cellular.iccid"}

    in_use = await fails(create_device(devices, tenant.operator, display_name="second", transports=[lte]))
    assert (in_use.code(), error_reason(in_use)) == (Code.ALREADY_EXISTS, "ICCID_IN_USE")
    assert "device.transports[0].cellular.iccid" in (in_use.details() or "")
    listed = await devices.ListDevices(dev.ListDevicesRequest(filter='display_name = "second"'),
                                       metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    assert list(listed.devices) == []  # nothing partial was written

    updated = await devices.UpdateDevice(dev.UpdateDeviceRequest(
        device=pb.Device(name=device.name, transports=[wired], etag=device.etag),
        update_mask=FieldMask(paths=["transports"])), metadata=bearer(tenant.operator), timeout=RPC_TIMEOUT)
    assert list(updated.transports) == [wired]
    moved = await create_device(devices, tenant.operator, transports=[lte])  # the SIM is free again
    got = await devices.GetDevice(dev.GetDeviceRequest(name=moved.name), metadata=bearer(tenant.viewer),
                                  timeout=RPC_TIMEOUT)
    assert list(got.transports) == [lte]
    other = await create_tenant(channel, admin_token)
    assert list((await create_device(devices, other.operator, transports=[lte])).transports) == [lte]
