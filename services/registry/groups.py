"""Device groups: STATIC ones list their members, DYNAMIC ones hold a ListDevices filter and have as
members whatever devices match it when read. No I/O here."""

from __future__ import annotations

import enum
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from muster.runtime.errors import FailedPrecondition, FieldViolation, InvalidArgument
from muster.runtime.filtering import Expr, parse_filter
from services.registry.domain import (
    ID_PATTERN,
    MAX_NOTES,
    Device,
    raise_if,
    validate_display_name,
    validate_labels,
    validate_text,
)
from services.registry.listings import DEVICES

MAX_MEMBERS_PER_CALL = 1000
_ALPHABET = string.ascii_lowercase + string.digits


class GroupType(enum.IntEnum):
    """Numbered as muster.registry.v1.GroupType."""

    STATIC = 1
    DYNAMIC = 2


def new_group_id() -> str:
    return "g" + "".join(secrets.choice(_ALPHABET) for _ in range(11))


@dataclass(frozen=True)
class Group:
    tenant_id: str
    id: str
    display_name: str
    create_time: datetime
    update_time: datetime
    type: GroupType = GroupType.STATIC
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    filter: str = ""  # DYNAMIC only
    version: int = 1

    @property
    def name(self) -> str:
        return f"groups/{self.id}"

    @property
    def is_dynamic(self) -> bool:
        return self.type is GroupType.DYNAMIC

    def membership(self) -> Expr | None:
        """The parsed filter of a DYNAMIC group (None for a STATIC one)."""
        return parse_device_filter(self.filter, "group.filter") if self.is_dynamic else None

    def require_static(self) -> None:
        """Members of a DYNAMIC group come from its filter: they cannot be added or removed by hand."""
        if self.is_dynamic:
            raise FailedPrecondition(f"{self.name} is DYNAMIC: its members are the devices matching its filter "
                                     f"({self.filter}); change the filter instead", reason="GROUP_IS_DYNAMIC")


def parse_device_filter(text: str, path: str) -> Expr | None:
    """`text` in the ListDevices filter language, or INVALID_ARGUMENT naming `path` (not "filter")."""
    try:
        return parse_filter(text, DEVICES.schema)
    except InvalidArgument as exc:
        description = exc.violations[0].description if exc.violations else exc.message
        raise InvalidArgument.field(path, description) from exc


def validate_group(group: Group) -> None:
    problems: list[FieldViolation] = []
    if not ID_PATTERN.match(group.id):
        problems.append(FieldViolation("group_id", "must be 3-40 of [a-z0-9-], starting with a letter"))
    problems += validate_display_name(group.display_name, "group.display_name", required=True)
    problems += validate_text(group.description, "group.description", MAX_NOTES)
    problems += validate_labels(group.labels, "group.labels")
    if group.is_dynamic and not group.filter.strip():
        problems.append(FieldViolation("group.filter", "is required for a DYNAMIC group: the ListDevices filter "
                                                       'its members match, e.g. labels.floor = "3"'))
    elif not group.is_dynamic and group.filter:
        problems.append(FieldViolation("group.filter", "only DYNAMIC groups have a filter; a STATIC group lists "
                                                       "its members (:addMembers)"))
    raise_if(problems)
    if group.is_dynamic:
        parse_device_filter(group.filter, "group.filter")


def unique_members(device_ids: Sequence[str]) -> list[str]:
    """The ids once each, in first-seen order; at most MAX_MEMBERS_PER_CALL, at least one."""
    if not device_ids:
        raise InvalidArgument.field("devices", "is required: at least one device, devices/{id}")
    if len(device_ids) > MAX_MEMBERS_PER_CALL:
        raise InvalidArgument.field("devices", f"has {len(device_ids)} entries; at most {MAX_MEMBERS_PER_CALL} "
                                               "per call")
    return list(dict.fromkeys(device_ids))


def missing_members(device_ids: Sequence[str], existing: set[str]) -> None:
    """INVALID_ARGUMENT naming every `devices[i]` that is not a device of the tenant."""
    raise_if([FieldViolation(f"devices[{i}]", f"device devices/{device_id} does not exist")
              for i, device_id in enumerate(device_ids) if device_id not in existing])


def device_filter_record(device: Device) -> dict[str, Any]:
    """The device as the ListDevices filter sees it (keys of DeviceRepository.columns), for `matches`."""
    return {"display_name": device.display_name, "serial": device.serial, "site": device.site_id,
            "state": int(device.state), "template": device.template_id, "labels": dict(device.labels),
            "create_time": device.create_time, "update_time": device.update_time}
