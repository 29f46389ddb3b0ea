"""The twin CLI against a real platform: a device created through the registry gets its twin (the
projection of the registry's events), desired state is changed with the etag, a stale etag is refused,
and the history is listed and rolled back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import PlatformLike

from .test_cli import as_json, muster, ok, tenant_admin

pytestmark = pytest.mark.platform


def _twin_of_new_device(platform: PlatformLike, admin: str) -> tuple[str, dict[str, Any]]:
    device = str(as_json(platform, "devices", "create", "--display-name", "valve", token=admin)["name"])
    deadline = time.monotonic() + 20
    while True:
        got = muster(platform, "twin", "get", device, "-o", "json", token=admin)
        if got.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got.exit_code == 0, got.output
    return device.removeprefix("devices/"), as_json(platform, "twin", "get", device, token=admin)


def test_update_with_etag_stale_refused_revisions_and_rollback(platform: PlatformLike) -> None:
    _, admin = tenant_admin(platform)
    device, twin = _twin_of_new_device(platform, admin)
    assert twin["name"] == f"devices/{device}/twin" and twin["delta"]["in_sync"] is True
    etag = str(twin["etag"])
    first = as_json(platform, "twin", "update-desired", device, '{"valve": {"open": 40}}', "--etag", etag, token=admin)
    assert first["desired"] == {"valve": {"open": 40}} and first["desired_version"] == "1"
    stale = muster(platform, "twin", "update-desired", device, '{"valve": {"open": 90}}', "--etag", etag, token=admin)
    assert stale.exit_code == 1 and "ABORTED" in stale.output
    ok(platform, "twin", "update-desired", device, '{"valve": null, "mode": "auto"}', "--force", token=admin)
    table = ok(platform, "twin", "revisions", device, token=admin).output
    assert "REVISION" in table and "ROLLBACK OF" in table
    rolled = as_json(platform, "twin", "rollback", device, "1", "--force", token=admin)
    assert rolled["desired"] == {"valve": {"open": 40}} and rolled["desired_version"] == "3"
    revisions = as_json(platform, "twin", "revisions", device, "--all", token=admin)["revisions"]
    assert [(r["revision"], r.get("rollback_of", "0")) for r in revisions] == [("3", "1"), ("2", "0"), ("1", "0")]
    assert "pending" in ok(platform, "twin", "get", device, token=admin).output


def test_a_patch_that_is_not_an_object_is_a_usage_error(platform: PlatformLike) -> None:
    result = muster(platform, "twin", "update-desired", "d1", "[1]", "--force", token="x")
    assert result.exit_code == 2 and "merge patch" in result.output
