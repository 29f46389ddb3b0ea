"""The provisioning CLI against a real platform: an admin creates a token (its secret printed once), a
device registers with it and no operator token, an operator rotates the secret, the admin revokes."""

from __future__ import annotations

import pytest
from helpers import PlatformLike

from .test_cli import as_json, muster, ok, tenant_admin

pytestmark = pytest.mark.platform


def test_token_register_rotate_and_revoke(platform: PlatformLike) -> None:
    _, admin = tenant_admin(platform)
    created = as_json(platform, "provisioning-tokens", "create", "--display-name", "batch 1", "--max-uses", "2",
                      "--ttl", "1h", "--label", "batch=1", token=admin)
    secret, token_id = created["secret"], created["name"].removeprefix("provisioningTokens/")
    assert secret.startswith("mpt_") and created["max_uses"] == 2

    table = ok(platform, "devices", "register", "--provisioning-token", secret, "--serial", "SN-CLI-1",
               "--model", "P-100").output
    assert "SECRET" in table and "MQTT PORT" in table and "shown only now" in table
    registered = as_json(platform, "devices", "register", "--provisioning-token", secret, "--serial", "SN-CLI-2")
    device_id = registered["device_id"]
    assert registered["mqtt"]["username"] == device_id and registered["device"]["labels"] == {"batch": "1"}

    used_up = muster(platform, "devices", "register", "--provisioning-token", secret, "--serial", "SN-CLI-3")
    assert used_up.exit_code == 1 and "FAILED_PRECONDITION" in used_up.output

    rotated = as_json(platform, "devices", "rotate-secret", device_id, "--grace-period", "10m", token=admin)
    assert rotated["device"] == f"devices/{device_id}" and rotated["valid_secret_count"] == 2
    assert rotated["device_secret"] != registered["device_secret"]

    listed = as_json(platform, "provisioning-tokens", "list", token=admin)
    assert [t["use_count"] for t in listed["provisioning_tokens"]] == [2]
    assert not any(t.get("secret") for t in listed["provisioning_tokens"])
    revoked = as_json(platform, "provisioning-tokens", "revoke", token_id, token=admin)
    assert revoked["state"] == "PROVISIONING_TOKEN_STATE_REVOKED"
    assert as_json(platform, "provisioning-tokens", "get", token_id, token=admin)["revoke_time"]
