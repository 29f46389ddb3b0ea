"""Groups between domain objects and protobuf messages."""

from __future__ import annotations

from muster.registry.v1 import group_resources_pb2 as gpb
from muster.runtime.errors import InvalidArgument
from muster.runtime.timestamps import timestamp_of
from services.registry.domain import etag_of
from services.registry.groups import Group, GroupType


def group_to_proto(group: Group) -> gpb.Group:
    return gpb.Group(name=group.name, display_name=group.display_name, description=group.description,
                     labels=dict(group.labels), type=gpb.GroupType.ValueType(int(group.type)), filter=group.filter,
                     create_time=timestamp_of(group.create_time), update_time=timestamp_of(group.update_time),
                     etag=etag_of(group.version))


def group_type_from_proto(value: int) -> GroupType:
    """GROUP_TYPE_UNSPECIFIED means STATIC."""
    if value == 0:
        return GroupType.STATIC
    if value not in GroupType._value2member_map_:
        raise InvalidArgument.field("group.type", f"unknown group type {value}; use GROUP_TYPE_STATIC or "
                                                  "GROUP_TYPE_DYNAMIC")
    return GroupType(value)
