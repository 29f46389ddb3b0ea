"""The registry through the REST gateway (Envoy gRPC-JSON transcoding): paths, JSON shape, status
mapping, body limits and CORS, as the ops console and scripts see them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from helpers import PlatformLike, TenantTokens, create_tenant

from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import tenant as tenant  # fixture
from .rest_support import auth
from .rest_support import error_reason as _reason
from .rest_support import http as http  # fixture

pytestmark = pytest.mark.platform

CONSOLE_ORIGIN = "http://localhost:5173"
ONE_MIB = 1024 * 1024


async def _create(http: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/devices", json=body, headers=auth(token))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


# --- the happy path ----------------------------------------------------------------------------------

async def test_post_creates_a_device_with_snake_case_fields(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    device = await _create(http, tenant.operator, display_name="Pump 7", serial="SN-7", labels={"env": "prod"})
    assert device["name"].startswith("devices/")
    assert (device["display_name"], device["serial"], device["labels"]) == ("Pump 7", "SN-7", {"env": "prod"})
    assert device["state"] == "DEVICE_STATE_PROVISIONED" and device["etag"] == '"1"'
    assert {"create_time", "update_time"} <= set(device)
    assert not {"displayName", "createTime", "updateTime"} & set(device)


async def test_get_lists_devices_with_a_bearer_token(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    created = [await _create(http, tenant.operator, display_name=f"d{i}") for i in range(3)]
    response = await http.get("/v1/devices", headers=auth(tenant.viewer))
    assert response.status_code == 200
    body = response.json()
    assert [d["name"] for d in body["devices"]] == [d["name"] for d in created]
    assert body["next_page_token"] == ""  # snake_case, and printed even when empty
    one = await http.get(f"/v1/{created[0]['name']}", headers=auth(tenant.viewer))
    assert one.status_code == 200 and one.json() == created[0]


async def test_every_response_carries_the_request_id(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    # gRPC carries it in the trailers; Envoy sets the header on successes and errors alike.
    sent = {**auth(tenant.viewer), "x-request-id": "rest-req-42"}
    ok = await http.get("/v1/devices", headers=sent)
    missing = await http.get("/v1/devices/nosuchdevice00000000", headers=sent)
    assert (ok.status_code, missing.status_code) == (200, 404)
    assert ok.headers["x-request-id"] == missing.headers["x-request-id"] == "rest-req-42"
    generated = await http.get("/v1/devices", headers=auth(tenant.viewer))
    assert generated.headers["x-request-id"]


async def test_list_takes_filter_and_page_size_as_query_parameters(http: httpx.AsyncClient,
                                                                   tenant: TenantTokens) -> None:
    prod = [await _create(http, tenant.operator, labels={"env": "prod"}) for _ in range(3)]
    await _create(http, tenant.operator, labels={"env": "dev"})
    names: list[str] = []
    token = ""
    prod_filter = quote('labels.env = "prod"')
    while True:
        query = f"filter={prod_filter}&page_size=2" + (f"&page_token={quote(token)}" if token else "")
        response = await http.get(f"/v1/devices?{query}", headers=auth(tenant.viewer))
        assert response.status_code == 200, response.text
        names.extend(d["name"] for d in response.json()["devices"])
        token = response.json()["next_page_token"]
        if not token:
            break
    assert names == [d["name"] for d in prod]


async def test_list_filter_accepts_form_encoded_spaces(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    device = await _create(http, tenant.operator, labels={"env": "prod"})
    response = await http.get("/v1/devices", params={"filter": 'labels.env = "prod"'}, headers=auth(tenant.viewer))
    assert response.status_code == 200, response.text
    assert [d["name"] for d in response.json()["devices"]] == [device["name"]]


async def test_patch_with_update_mask_changes_only_the_masked_field(http: httpx.AsyncClient,
                                                                    tenant: TenantTokens) -> None:
    device = await _create(http, tenant.operator, display_name="old", notes="keep me")
    response = await http.patch(f"/v1/{device['name']}?update_mask=display_name",
                                json={"display_name": "new", "notes": "not masked", "etag": device["etag"]},
                                headers=auth(tenant.operator))
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["display_name"], updated["notes"], updated["etag"]) == ("new", "keep me", '"2"')


async def test_lifecycle_action_and_an_invalid_transition(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    device = await _create(http, tenant.operator)
    activated = await http.post(f"/v1/{device['name']}:activate", json={}, headers=auth(tenant.operator))
    assert activated.status_code == 200 and activated.json()["state"] == "DEVICE_STATE_ACTIVE"
    again = await http.post(f"/v1/{device['name']}:activate", json={}, headers=auth(tenant.operator))
    assert again.status_code == 400  # FAILED_PRECONDITION
    assert again.json()["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert _reason(again.json()) == "INVALID_STATE_TRANSITION"


async def test_delete_then_get_is_404(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    device = await _create(http, tenant.operator)
    deleted = await http.delete(f"/v1/{device['name']}", headers=auth(tenant.admin))
    assert deleted.status_code == 200
    assert (await http.get(f"/v1/{device['name']}", headers=auth(tenant.admin))).status_code == 404


# --- errors as HTTP statuses -------------------------------------------------------------------------

async def test_stale_etag_is_409_with_the_reason(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    device = await _create(http, tenant.operator, display_name="v1")
    path = f"/v1/{device['name']}?update_mask=display_name"
    first = await http.patch(path, json={"display_name": "v2", "etag": device["etag"]}, headers=auth(tenant.operator))
    assert first.status_code == 200
    stale = await http.patch(path, json={"display_name": "v3", "etag": device["etag"]}, headers=auth(tenant.operator))
    assert stale.status_code == 409
    assert stale.json()["code"] == grpc.StatusCode.ABORTED.value[0] and _reason(stale.json()) == "ETAG_MISMATCH"
    current = await http.get(f"/v1/{device['name']}", headers=auth(tenant.viewer))
    assert current.json()["display_name"] == "v2"


async def test_bad_filter_is_400_with_a_field_violation(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    response = await http.get(f"/v1/devices?filter={quote('colour = red')}", headers=auth(tenant.viewer))
    assert response.status_code == 400
    violations = [v for d in response.json()["details"] if d["@type"].endswith("google.rpc.BadRequest")
                  for v in d["field_violations"]]
    assert [v["field"] for v in violations] == ["filter"]


@pytest.mark.xfail(strict=True, reason="Envoy's grpc_json_transcoder drops unknown JSON body fields and has no "
                                       "option to reject them (envoyproxy/envoy#46623)")
async def test_unknown_json_field_in_the_body_is_400(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    response = await http.post("/v1/devices", json={"display_name": "x", "colour": "red"},
                               headers=auth(tenant.operator))
    assert response.status_code == 400


@pytest.mark.parametrize("content", [b'{"display_name": ', b'{"labels": "not a map"}', b'{"state": "FLYING"}',
                                     b"[1, 2]"])
async def test_malformed_or_mistyped_json_body_is_400_and_creates_nothing(
        http: httpx.AsyncClient, tenant: TenantTokens, content: bytes) -> None:
    response = await http.post("/v1/devices", content=content,
                               headers={**auth(tenant.operator), "content-type": "application/json"})
    assert response.status_code == 400
    listed = await http.get("/v1/devices", headers=auth(tenant.viewer))
    assert listed.json()["devices"] == []


async def test_unknown_query_parameter_is_400(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    response = await http.get("/v1/devices?colour=red", headers=auth(tenant.viewer))
    assert response.status_code == 400


async def test_body_over_one_mib_is_413_before_reaching_the_service(http: httpx.AsyncClient,
                                                                   tenant: TenantTokens) -> None:
    body = json.dumps({"display_name": "big", "notes": "n" * (ONE_MIB + 1)}).encode()
    response = await http.post("/v1/devices", content=body,
                               headers={**auth(tenant.operator), "content-type": "application/json"})
    assert response.status_code == 413
    listed = await http.get("/v1/devices", headers=auth(tenant.viewer))
    assert listed.json()["devices"] == []


async def test_body_just_under_the_limit_reaches_the_service(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    body = json.dumps({"notes": "n" * (ONE_MIB - 1024)}).encode()
    response = await http.post("/v1/devices", content=body,
                               headers={**auth(tenant.operator), "content-type": "application/json"})
    assert response.status_code == 400  # the service's own notes limit, not the gateway's size limit
    assert "device.notes" in response.json()["message"]


async def test_no_token_is_401(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/devices")
    assert response.status_code == 401
    assert _reason(response.json()) == "TOKEN_MISSING"


async def test_viewer_post_is_403_and_creates_nothing(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    response = await http.post("/v1/devices", json={"display_name": "x"}, headers=auth(tenant.viewer))
    assert response.status_code == 403
    assert _reason(response.json()) == "ROLE_TOO_LOW"
    assert (await http.get("/v1/devices", headers=auth(tenant.viewer))).json()["devices"] == []


async def test_another_tenants_device_is_404_and_leaks_nothing(
        http: httpx.AsyncClient, channel: grpc.aio.Channel, platform: PlatformLike, tenant: TenantTokens) -> None:
    other = await create_tenant(channel, str(platform.endpoints["admin_token"]))
    theirs = await _create(http, other.operator, display_name="Secret B", serial="B-1")
    for response in (
        await http.get(f"/v1/{theirs['name']}", headers=auth(tenant.admin)),
        await http.patch(f"/v1/{theirs['name']}?update_mask=display_name", json={"display_name": "pwned"},
                         headers=auth(tenant.admin)),
        await http.delete(f"/v1/{theirs['name']}", headers=auth(tenant.admin)),
    ):
        assert response.status_code == 404
        assert other.id not in response.text and "Secret B" not in response.text and "B-1" not in response.text
    untouched = await http.get(f"/v1/{theirs['name']}", headers=auth(other.viewer))
    assert untouched.json() == theirs


# --- CORS for the ops console ------------------------------------------------------------------------

async def test_cors_preflight_from_the_console_is_allowed_with_the_origin_echoed(http: httpx.AsyncClient) -> None:
    response = await http.options("/v1/devices/abcdefghij0123456789", headers={
        "Origin": CONSOLE_ORIGIN, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code in (200, 204), response.text
    assert response.headers.get("access-control-allow-origin") == CONSOLE_ORIGIN
    assert "PATCH" in response.headers.get("access-control-allow-methods", "")
    assert "authorization" in response.headers.get("access-control-allow-headers", "").lower()


async def test_cors_preflight_from_an_unknown_origin_is_not_allowed(http: httpx.AsyncClient) -> None:
    response = await http.options("/v1/devices", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers


async def test_cross_origin_response_carries_the_allow_origin_header(http: httpx.AsyncClient,
                                                                     tenant: TenantTokens) -> None:
    response = await http.get("/v1/devices", headers={**auth(tenant.viewer), "Origin": CONSOLE_ORIGIN})
    assert response.status_code == 200
    assert response.headers.get("access-control-allow-origin") == CONSOLE_ORIGIN
