"""Device provisioning end to end through the REST gateway (Envoy) with the real registry and PostgreSQL:
an admin creates a token, a device registers with NO Authorization header and gets its secret and MQTT
details, registering again and expired/revoked/unknown tokens are refused with their reasons, an operator
rotates the secret, tenants never see each other's tokens, and the device edge's event reaches JetStream."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import grpc
import httpx
import nats
import pytest
from helpers import PlatformLike, TenantTokens, create_tenant, service_nats_url
from nats.errors import TimeoutError as NatsTimeoutError

from muster.events.v1.event_pb2 import Event
from muster.registry.v1 import events_pb2 as ev
from muster.runtime.bus import EVENTS_STREAM

from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import tenant as tenant  # fixture
from .rest_support import auth
from .rest_support import error_reason as reason
from .rest_support import http as http  # fixture

pytestmark = pytest.mark.platform

SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 random bytes, URL-safe base64


async def create_token(http: httpx.AsyncClient, admin: str, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/provisioningTokens", json=body, headers=auth(admin))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def register(http: httpx.AsyncClient, token: str, serial: str, **body: Any) -> httpx.Response:
    """As a device does it: no Authorization header at all."""
    return await http.post("/v1/devices:register", json={"provisioning_token": token, "serial": serial, **body})


async def test_a_device_provisions_itself_without_an_operator_token(http: httpx.AsyncClient, tenant: TenantTokens,
                                                                   platform: PlatformLike) -> None:
    token = await create_token(http, tenant.admin, display_name="batch 7", labels={"batch": "7"})
    assert token["secret"].startswith("mpt_") and token["state"] == "PROVISIONING_TOKEN_STATE_ACTIVE"
    assert token["name"].startswith("provisioningTokens/") and token["max_uses"] == 1

    response = await register(http, token["secret"], "SN-REST-1",
                              hardware={"model": "P-100", "firmware_version": "1.2.3"})
    assert response.status_code == 200, response.text
    body = response.json()
    device_id = body["device_id"]
    assert body["device"]["name"] == f"devices/{device_id}" and body["device"]["serial"] == "SN-REST-1"
    assert body["device"]["labels"] == {"batch": "7"} and body["claimed"] is False
    assert SECRET.match(body["device_secret"])
    mqtt_host, mqtt_port = str(platform.endpoints["mqtt"]).rsplit(":", 1)
    assert body["mqtt"] == {"host": mqtt_host, "port": int(mqtt_port), "username": device_id,
                            "client_id": device_id, "topic_prefix": f"muster/v1/devices/{device_id}/"}

    # the device exists in the token's tenant, for its operators
    device = await http.get(f"/v1/devices/{device_id}", headers=auth(tenant.viewer))
    assert device.status_code == 200 and device.json()["serial"] == "SN-REST-1"

    # the same serial again with the (now used) one-time token: refused, and why
    again = await register(http, token["secret"], "SN-REST-1")
    assert again.status_code == 409 and reason(again.json()) == "DEVICE_ALREADY_REGISTERED", again.text
    other = await register(http, token["secret"], "SN-REST-2")
    assert other.status_code == 400 and reason(other.json()) == "PROVISIONING_TOKEN_USED_UP", other.text

    # the secret is never readable again
    listed = await http.get("/v1/provisioningTokens", headers=auth(tenant.admin))
    assert listed.status_code == 200
    [shown] = listed.json()["provisioning_tokens"]
    assert shown["secret"] == "" and shown["use_count"] == 1 and shown["state"] == "PROVISIONING_TOKEN_STATE_USED_UP"


async def test_expired_revoked_and_unknown_tokens_are_refused_with_reasons(http: httpx.AsyncClient,
                                                                           tenant: TenantTokens) -> None:
    expiring = await create_token(http, tenant.admin, ttl="1s")
    revoked = await create_token(http, tenant.admin)
    response = await http.post(f"/v1/{revoked['name']}:revoke", json={}, headers=auth(tenant.admin))
    assert response.status_code == 200 and response.json()["state"] == "PROVISIONING_TOKEN_STATE_REVOKED"

    refused = await register(http, revoked["secret"], "SN-X")
    assert refused.status_code == 400 and reason(refused.json()) == "PROVISIONING_TOKEN_REVOKED", refused.text
    unknown = await register(http, "mpt_" + "A" * 43, "SN-X")
    assert unknown.status_code == 401 and reason(unknown.json()) == "PROVISIONING_TOKEN_INVALID", unknown.text
    await asyncio.sleep(1.2)
    expired = await register(http, expiring["secret"], "SN-X")
    assert expired.status_code == 400 and reason(expired.json()) == "PROVISIONING_TOKEN_EXPIRED", expired.text
    missing = await http.post("/v1/devices:register", json={"provisioning_token": revoked["secret"]})
    assert missing.status_code == 400 and "serial" in missing.json()["message"]


async def test_only_admins_manage_tokens_and_tenants_never_see_each_others(
        http: httpx.AsyncClient, tenant: TenantTokens, channel: grpc.aio.Channel, platform: PlatformLike) -> None:
    denied = await http.post("/v1/provisioningTokens", json={}, headers=auth(tenant.operator))
    assert denied.status_code == 403
    anonymous = await http.get("/v1/provisioningTokens")
    assert anonymous.status_code == 401
    mine = await create_token(http, tenant.admin)
    other = await create_tenant(channel, str(platform.endpoints["admin_token"]))
    theirs = await http.get("/v1/provisioningTokens", headers=auth(other.admin))
    assert theirs.status_code == 200 and theirs.json()["provisioning_tokens"] == []
    peek = await http.get(f"/v1/{mine['name']}", headers=auth(other.admin))
    assert peek.status_code == 404
    revoke = await http.post(f"/v1/{mine['name']}:revoke", json={}, headers=auth(other.admin))
    assert revoke.status_code == 404


async def test_rotation_returns_a_new_secret_and_publishes_the_credentials_event(
        http: httpx.AsyncClient, tenant: TenantTokens, platform: PlatformLike) -> None:
    token = await create_token(http, tenant.admin)
    registered = (await register(http, token["secret"], "SN-ROT")).json()
    name = registered["device"]["name"]
    rotated = await http.post(f"/v1/{name}:rotateSecret", json={"grace_period": "600s"}, headers=auth(tenant.operator))
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["device"] == name and SECRET.match(body["device_secret"])
    assert body["device_secret"] != registered["device_secret"] and body["valid_secret_count"] == 2
    viewer = await http.post(f"/v1/{name}:rotateSecret", json={}, headers=auth(tenant.viewer))
    assert viewer.status_code == 403

    events = await _credential_events(platform, tenant.id, want=2)
    assert [e.subject for e in events] == [name, name]
    first, second = ev.DeviceCredentialsChanged(), ev.DeviceCredentialsChanged()
    events[0].payload.Unpack(first)
    events[1].payload.Unpack(second)
    assert len(first.secrets) == 1 and not first.revoke_sessions
    assert len(second.secrets) == 2 and not second.revoke_sessions
    assert first.secrets[0].hmac_sha256 in {s.hmac_sha256 for s in second.secrets}
    assert all(re.fullmatch(r"[0-9a-f]{64}", s.hmac_sha256) for s in second.secrets)


async def _credential_events(platform: PlatformLike, tenant: str, want: int) -> list[Event]:
    nc = await nats.connect(service_nats_url(platform))
    events: list[Event] = []
    try:
        sub = await nc.jetstream().pull_subscribe(f"muster.events.registry.{tenant}.DeviceCredentialsChanged",
                                                  durable=None, stream=EVENTS_STREAM)
        deadline = time.monotonic() + 15
        while len(events) < want and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(10, timeout=1.0)
            except NatsTimeoutError:
                continue
            for msg in msgs:
                events.append(Event.FromString(msg.data))
                await msg.ack()
        await sub.unsubscribe()
    finally:
        await nc.close()
    return events
