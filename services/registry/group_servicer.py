"""The gRPC edge of device groups: proto in, command to a handler, proto out. No rules live here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty

from muster.registry.v1 import group_resources_pb2 as gpb
from muster.registry.v1 import group_service_pb2 as grp
from muster.registry.v1 import group_service_pb2_grpc as grp_grpc
from muster.runtime.context import current_principal
from muster.runtime.errors import FieldViolation, InvalidArgument
from muster.runtime.fieldmask import validate_update_mask
from muster.runtime.names import parse_name
from services.registry import commands as cmd
from services.registry.domain import DEVICE_ID_PATTERN, ID_PATTERN, raise_if
from services.registry.group_handlers import GROUP_FIELDS, CreateGroup, GroupHandlers
from services.registry.group_mapping import group_to_proto, group_type_from_proto
from services.registry.mapping import device_to_proto

Context = grpc.aio.ServicerContext[Any, Any]

GROUP_OUTPUT_ONLY = ("name", "type", "create_time", "update_time", "etag")


def _list_params(request: Any) -> cmd.ListParams:
    return cmd.ListParams(page_size=request.page_size, page_token=request.page_token, filter=request.filter,
                          order_by=request.order_by)


def _group_id(name: str, field: str = "name") -> str:
    return parse_name(name, "groups", ID_PATTERN, field=field)


def _device_ids(names: Sequence[str]) -> list[str]:
    """`devices/{id}` of each entry, or INVALID_ARGUMENT naming every malformed `devices[i]`."""
    ids: list[str] = []
    problems: list[FieldViolation] = []
    for i, name in enumerate(names):
        try:
            ids.append(parse_name(name, "devices", DEVICE_ID_PATTERN, field=f"devices[{i}]"))
        except InvalidArgument as exc:
            problems += exc.violations
    raise_if(problems)
    return ids


def _group_value(message: gpb.Group, path: str) -> Any:
    if path == "labels":
        return dict(message.labels)
    return getattr(message, path)


class GroupServicer(grp_grpc.GroupServiceServicer):
    def __init__(self, handlers: GroupHandlers) -> None:
        self._h = handlers

    async def CreateGroup(self, request: grp.CreateGroupRequest, context: Context) -> gpb.Group:
        g = request.group
        created = await self._h.create_group(current_principal(), CreateGroup(
            group_id=request.group_id, display_name=g.display_name, type=group_type_from_proto(g.type),
            description=g.description, labels=dict(g.labels), filter=g.filter))
        return group_to_proto(created)

    async def GetGroup(self, request: grp.GetGroupRequest, context: Context) -> gpb.Group:
        return group_to_proto(await self._h.get_group(current_principal(), _group_id(request.name)))

    async def ListGroups(self, request: grp.ListGroupsRequest, context: Context) -> grp.ListGroupsResponse:
        groups, token = await self._h.list_groups(current_principal(), _list_params(request))
        return grp.ListGroupsResponse(groups=[group_to_proto(g) for g in groups], next_page_token=token)

    async def UpdateGroup(self, request: grp.UpdateGroupRequest, context: Context) -> gpb.Group:
        group_id = _group_id(request.group.name, "group.name")
        mask = validate_update_mask(list(request.update_mask.paths), GROUP_FIELDS, output_only=GROUP_OUTPUT_ONLY)
        update = cmd.Update(id=group_id, mask=mask, etag=request.group.etag,
                            values={path: _group_value(request.group, path) for path in mask})
        return group_to_proto(await self._h.update_group(current_principal(), update))

    async def DeleteGroup(self, request: grp.DeleteGroupRequest, context: Context) -> Empty:
        await self._h.delete_group(current_principal(), cmd.Delete(_group_id(request.name), request.etag))
        return Empty()

    async def AddGroupMembers(self, request: grp.AddGroupMembersRequest,
                              context: Context) -> grp.AddGroupMembersResponse:
        group_id = _group_id(request.group, "group")
        added = await self._h.add_members(current_principal(), group_id, _device_ids(request.devices))
        return grp.AddGroupMembersResponse(added_devices=[f"devices/{d}" for d in added])

    async def RemoveGroupMembers(self, request: grp.RemoveGroupMembersRequest,
                                 context: Context) -> grp.RemoveGroupMembersResponse:
        group_id = _group_id(request.group, "group")
        removed = await self._h.remove_members(current_principal(), group_id, _device_ids(request.devices))
        return grp.RemoveGroupMembersResponse(removed_devices=[f"devices/{d}" for d in removed])

    async def ListGroupMembers(self, request: grp.ListGroupMembersRequest,
                               context: Context) -> grp.ListGroupMembersResponse:
        group_id = _group_id(request.group, "group")
        devices, token = await self._h.list_members(current_principal(), group_id, _list_params(request))
        return grp.ListGroupMembersResponse(devices=[device_to_proto(d) for d in devices], next_page_token=token)

    async def ListDeviceGroups(self, request: grp.ListDeviceGroupsRequest,
                               context: Context) -> grp.ListDeviceGroupsResponse:
        device_id = parse_name(request.device, "devices", DEVICE_ID_PATTERN, field="device")
        groups, token = await self._h.list_device_groups(current_principal(), device_id, _list_params(request))
        return grp.ListDeviceGroupsResponse(groups=[group_to_proto(g) for g in groups], next_page_token=token)
