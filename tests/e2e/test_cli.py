"""The operator CLI against a real platform: the README's walkthrough, and how real errors read.

Every invocation finds the platform the way an operator's shell does: only MUSTER_DATA_DIR is set,
and the address and bootstrap admin token come from its run/endpoints.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from helpers import PlatformLike, unique_id
from typer.testing import CliRunner, Result

from muster.cli.app import app

pytestmark = pytest.mark.platform


def muster(platform: PlatformLike, *args: str, token: str | None = None) -> Result:
    env: dict[str, str | None] = {"MUSTER_DATA_DIR": str(platform.data_dir), "MUSTER_GRPC": None,
                                  "MUSTER_TOKEN": token}
    return CliRunner().invoke(app, list(args), env=env)


def ok(platform: PlatformLike, *args: str, token: str | None = None) -> Result:
    result = muster(platform, *args, token=token)
    assert result.exit_code == 0, f"muster {' '.join(args)}:\n{result.output}"
    return result


def as_json(platform: PlatformLike, *args: str, token: str | None = None) -> Any:
    return json.loads(ok(platform, *args, "--output", "json", token=token).stdout)


def tenant_admin(platform: PlatformLike) -> tuple[str, str]:
    """A fresh tenant and an admin token for it, made with the CLI itself."""
    tenant = unique_id("cli")
    ok(platform, "tenants", "create", tenant, "--display-name", f"CLI test {tenant}")
    token = ok(platform, "tokens", "issue", "--tenant", tenant, "--role", "admin", "--subject", "ops@example.test",
               "--ttl", "1h").stdout.strip()
    return tenant, token


def test_readme_walkthrough_creates_lists_operates_and_deletes(platform: PlatformLike) -> None:
    tenant, token = tenant_admin(platform)
    assert as_json(platform, "tenants", "get", tenant)["name"] == f"tenants/{tenant}"

    ok(platform, "sites", "create", "--id", "berlin", "--display-name", "Berlin plant", "--time-zone",
       "Europe/Berlin", token=token)
    device = as_json(platform, "devices", "create", "--display-name", "pump 1", "--site", "berlin", "--serial",
                     "SN-0001", "--label", "floor=3", token=token)
    device_id = device["name"].removeprefix("devices/")
    assert (device["site"], device["state"]) == ("sites/berlin", "DEVICE_STATE_PROVISIONED")

    listed = as_json(platform, "devices", "list", "--filter", 'labels.floor = "3" AND state = PROVISIONED',
                     token=token)
    assert [d["name"] for d in listed["devices"]] == [device["name"]]
    table = ok(platform, "devices", "list", token=token).stdout
    assert device_id in table and "PROVISIONED" in table

    updated = as_json(platform, "devices", "update", device_id, "--notes", "left of the door", "--etag",
                      device["etag"], token=token)
    assert updated["notes"] == "left of the door" and updated["etag"] != device["etag"]

    for verb, state in (("activate", "ACTIVE"), ("suspend", "SUSPENDED"), ("retire", "RETIRED")):
        changed = as_json(platform, "devices", verb, device_id, "--reason", "e2e", token=token)
        assert changed["state"] == f"DEVICE_STATE_{state}"

    assert ok(platform, "devices", "delete", device_id, token=token).stdout == f"deleted devices/{device_id}\n"
    ok(platform, "sites", "delete", "berlin", token=token)
    ok(platform, "tenants", "delete", tenant)
    gone = muster(platform, "tenants", "get", tenant)
    assert gone.exit_code == 1 and gone.stderr.startswith("error: NOT_FOUND: ")


def test_list_all_follows_pages_across_the_real_pagination(platform: PlatformLike) -> None:
    _, token = tenant_admin(platform)
    created = [as_json(platform, "devices", "create", "--display-name", f"d{i}", token=token)["name"]
               for i in range(3)]
    one_page = ok(platform, "devices", "list", "--page-size", "2", token=token)
    assert "--page-token" in one_page.stderr
    listed = as_json(platform, "devices", "list", "--all", "--page-size", "2", token=token)
    assert [d["name"] for d in listed["devices"]] == created
    assert listed["next_page_token"] == ""


def test_site_update_masks_only_the_given_fields(platform: PlatformLike) -> None:
    _, token = tenant_admin(platform)
    ok(platform, "sites", "create", "--id", "depot", "--display-name", "Depot", "--address", "Dock 4",
       "--label", "a=1", token=token)
    updated = as_json(platform, "sites", "update", "depot", "--display-name", "North depot", token=token)
    assert (updated["display_name"], updated["address"], updated["labels"]) == ("North depot", "Dock 4", {"a": "1"})


def test_an_invalid_tenant_id_is_rendered_naming_the_field(platform: PlatformLike) -> None:
    result = muster(platform, "tenants", "create", "Not Valid!", "--display-name", "x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: INVALID_ARGUMENT: ")
    assert "tenant_id" in result.stderr  # in the message or a violation line


def test_a_stale_etag_is_aborted_with_a_hint_to_re_read(platform: PlatformLike) -> None:
    _, token = tenant_admin(platform)
    device = as_json(platform, "devices", "create", "--display-name", "d", token=token)
    ok(platform, "devices", "update", device["name"], "--notes", "first", token=token)
    result = muster(platform, "devices", "update", device["name"], "--notes", "second", "--etag", device["etag"],
                    token=token)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ABORTED: ")
    assert "hint: " in result.stderr


def test_the_bootstrap_admin_token_on_devices_hints_at_issuing_a_tenant_token(platform: PlatformLike) -> None:
    result = muster(platform, "devices", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: PERMISSION_DENIED: ")
    assert "muster tokens issue --tenant" in result.stderr


def test_tokens_issue_output_works_as_muster_token_in_a_real_shell(platform: PlatformLike) -> None:
    tenant = unique_id("cli")
    ok(platform, "tenants", "create", tenant, "--display-name", "shell test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    env["MUSTER_DATA_DIR"] = str(platform.data_dir)
    script = (f'export MUSTER_TOKEN=$("{sys.executable}" -m muster.cli.app tokens issue --tenant {tenant} '
              f'--role viewer --subject sh) && "{sys.executable}" -m muster.cli.app devices list --output json')
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"devices": [], "next_page_token": ""}
