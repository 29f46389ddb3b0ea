"""Group rules without I/O: a DYNAMIC group needs a filter in the ListDevices language (refusals name
`group.filter`), a STATIC one may not have one; member lists are deduplicated and bounded; unknown
devices are named by their index in the request; and a device's filter record matches the columns
the SQL filter uses, so `matches` and `to_sql` judge the same fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from muster.runtime.errors import FailedPrecondition, InvalidArgument
from muster.runtime.filtering import matches
from services.registry import listings
from services.registry.domain import Device, DeviceState
from services.registry.groups import (
    MAX_MEMBERS_PER_CALL,
    Group,
    GroupType,
    device_filter_record,
    missing_members,
    unique_members,
    validate_group,
)
from services.registry.repository import DeviceRepository

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _group(**fields: Any) -> Group:
    return Group(**{"tenant_id": "tenant-a", "id": "pumps", "display_name": "Pumps", "create_time": T0,
                    "update_time": T0, **fields})


@pytest.mark.parametrize("fields", [
    {},
    {"type": GroupType.DYNAMIC, "filter": 'labels.floor = "3" AND state = ACTIVE'},
    {"type": GroupType.DYNAMIC, "filter": 'site = "sites/berlin" OR display_name = "pump*"'},
])
def test_valid_groups(fields: dict[str, Any]) -> None:
    validate_group(_group(**fields))


@pytest.mark.parametrize(("fields", "bad_field", "words"), [
    ({"type": GroupType.DYNAMIC, "filter": ""}, "group.filter", "required"),
    ({"type": GroupType.DYNAMIC, "filter": "colour = red"}, "group.filter", 'unknown field "colour"'),
    ({"type": GroupType.DYNAMIC, "filter": "state = BROKEN"}, "group.filter", "unknown state"),
    ({"type": GroupType.DYNAMIC, "filter": "labels.floor = "}, "group.filter", "expected a value"),
    ({"filter": 'labels.floor = "3"'}, "group.filter", "only DYNAMIC groups"),
    ({"display_name": ""}, "group.display_name", "required"),
    ({"id": "No"}, "group_id", "3-40"),
    ({"labels": {"Bad": "x"}}, "group.labels.Bad", "keys"),
    ({"description": "x" * 5000}, "group.description", "at most"),
])
def test_invalid_groups_name_the_field(fields: dict[str, Any], bad_field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_group(_group(**fields))
    (violation,) = caught.value.violations
    assert violation.field == bad_field and words in violation.description


def test_members_of_a_dynamic_group_cannot_be_changed_by_hand() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        _group(type=GroupType.DYNAMIC, filter="state = ACTIVE").require_static()
    assert caught.value.reason == "GROUP_IS_DYNAMIC"
    _group().require_static()


def test_member_lists_are_deduplicated_in_order_and_bounded() -> None:
    assert unique_members(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    for bad in ([], ["x"] * (MAX_MEMBERS_PER_CALL + 1)):
        with pytest.raises(InvalidArgument) as caught:
            unique_members(bad)
        assert [v.field for v in caught.value.violations] == ["devices"]


def test_unknown_devices_are_named_by_their_request_index() -> None:
    with pytest.raises(InvalidArgument) as caught:
        missing_members(["d1", "nope", "d2", "gone"], {"d1", "d2"})
    assert [v.field for v in caught.value.violations] == ["devices[1]", "devices[3]"]
    assert "devices/nope does not exist" in caught.value.violations[0].description
    missing_members(["d1"], {"d1"})


def test_the_filter_record_has_exactly_the_sql_filter_columns() -> None:
    device = Device(tenant_id="tenant-a", id="d" * 20, create_time=T0, update_time=T0)
    assert set(device_filter_record(device)) == set(DeviceRepository.columns)
    assert set(listings.DEVICES.schema.fields) | set(listings.DEVICES.schema.map_fields.values()) <= set(
        DeviceRepository.columns)


@pytest.mark.parametrize(("text", "expected"), [
    ('labels.floor = "3" AND state = ACTIVE', True),
    ('labels.floor = "4"', False),
    ('site = "sites/berlin" AND template = "templates/pump"', True),
    ('display_name = "Pump*"', True),
    ("state = SUSPENDED", False),
    ("NOT labels.room:*", True),
])
def test_a_dynamic_group_matches_a_device_in_memory(text: str, expected: bool) -> None:
    device = Device(tenant_id="tenant-a", id="d" * 20, create_time=T0, update_time=T0, display_name="Pump 7",
                    site_id="berlin", template_id="pump", labels={"floor": "3"}, state=DeviceState.ACTIVE)
    group = _group(type=GroupType.DYNAMIC, filter=text)
    assert matches(group.membership(), device_filter_record(device)) is expected


def test_the_group_type_filter_uses_the_enums_numbers() -> None:
    values = listings.GROUPS.schema.fields["type"].enum_values
    assert {name: values[name] for name in ("STATIC", "DYNAMIC")} == {t.name: int(t) for t in GroupType}
    assert {values[f"GROUP_TYPE_{t.name}"] for t in GroupType} == {int(t) for t in GroupType}
