"""The groups CLI against a real platform: a static group with members added and removed, a dynamic group
whose members follow its filter, and the groups one device is in."""

from __future__ import annotations

import pytest
from helpers import PlatformLike

from .test_cli import as_json, muster, ok, tenant_admin

pytestmark = pytest.mark.platform


def _device(platform: PlatformLike, admin: str, name: str, floor: str) -> str:
    created = as_json(platform, "devices", "create", "--display-name", name, "--label", f"floor={floor}", token=admin)
    return str(created["name"]).removeprefix("devices/")


def test_static_and_dynamic_groups_and_a_devices_groups(platform: PlatformLike) -> None:
    _, admin = tenant_admin(platform)
    first, second = _device(platform, admin, "pump 1", "3"), _device(platform, admin, "pump 2", "4")

    as_json(platform, "groups", "create", "--id", "pumps", "--display-name", "Pumps", token=admin)
    added = as_json(platform, "groups", "add-members", "pumps", first, second, token=admin)
    assert sorted(added["added_devices"]) == sorted([f"devices/{first}", f"devices/{second}"])
    assert "REMOVED" in ok(platform, "groups", "remove-members", "pumps", second, token=admin).output
    members = as_json(platform, "groups", "members", "pumps", token=admin)
    assert [d["name"] for d in members["devices"]] == [f"devices/{first}"]

    dynamic = as_json(platform, "groups", "create", "--id", "floor-3", "--display-name", "Floor 3", "--type",
                      "dynamic", "--device-filter", 'labels.floor = "3"', token=admin)
    assert dynamic["type"] == "GROUP_TYPE_DYNAMIC"
    assert [d["name"] for d in as_json(platform, "groups", "members", "floor-3", token=admin)["devices"]] == [
        f"devices/{first}"]
    refused = muster(platform, "groups", "add-members", "floor-3", second, token=admin)
    assert refused.exit_code == 1 and "FAILED_PRECONDITION" in refused.output

    updated = as_json(platform, "groups", "update", "floor-3", "--device-filter", 'labels.floor = "4"', token=admin)
    assert updated["filter"] == 'labels.floor = "4"'
    of_second = as_json(platform, "groups", "of-device", second, token=admin)
    assert [g["name"] for g in of_second["groups"]] == ["groups/floor-3"]
    of_first = as_json(platform, "groups", "of-device", first, token=admin)
    assert [g["name"] for g in of_first["groups"]] == ["groups/pumps"]

    ok(platform, "groups", "delete", "pumps", token=admin)
    assert as_json(platform, "groups", "list", token=admin)["groups"][0]["name"] == "groups/floor-3"
