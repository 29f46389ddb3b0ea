"""Groups and transports through the REST gateway (Envoy gRPC-JSON transcoding), as the ops console
sees them: create a static and a dynamic group, :addMembers with an unknown device refused as a 400
naming devices[i], members and a device's groups paged over GET, and a device with a cellular
transport whose bad ICCID is a 400 naming the field path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from helpers import PlatformLike, TenantTokens

from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import tenant as tenant  # fixture

pytestmark = pytest.mark.platform

SIM = "8944500102198304826"


@pytest.fixture(scope="module")
async def http(platform: PlatformLike) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.endpoints["rest"], timeout=15.0) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_groups_over_rest(http: httpx.AsyncClient, tenant: TenantTokens) -> None:
    op, viewer = auth(tenant.operator), auth(tenant.viewer)
    lte = {"protocol": "TRANSPORT_PROTOCOL_MQTT", "cellular": {"iccid": SIM, "apn": "iot.example.com"}}
    d1 = await _ok(await http.post("/v1/devices", json={"display_name": "p1", "labels": {"kind": "pump"},
                                                        "transports": [lte]}, headers=op))
    assert d1["transports"][0]["cellular"]["iccid"] == SIM
    d2 = await _ok(await http.post("/v1/devices", json={"display_name": "p2", "labels": {"kind": "pump"}},
                                   headers=op))
    bad = await http.patch(f"/v1/{d2['name']}", params={"update_mask": "transports"},
                           json={"transports": [{"protocol": "TRANSPORT_PROTOCOL_MQTT",
                                                 "cellular": {"iccid": SIM[:-1] + "7"}}]}, headers=op)
    assert bad.status_code == 400, bad.text
    assert "device.transports[0].cellular.iccid" in bad.text

    static = await _ok(await http.post("/v1/groups", params={"group_id": "line-1"},
                                       json={"display_name": "Line 1"}, headers=op))
    assert (static["name"], static["type"]) == ("groups/line-1", "GROUP_TYPE_STATIC")
    pumps = await _ok(await http.post("/v1/groups", json={"display_name": "Pumps", "type": "GROUP_TYPE_DYNAMIC",
                                                          "filter": 'labels.kind = "pump"'}, headers=op))

    refused = await http.post("/v1/groups/line-1:addMembers",
                              json={"devices": [d1["name"], "devices/" + "q" * 20]}, headers=op)
    assert refused.status_code == 400, refused.text
    assert "devices[1]" in refused.text
    added = await _ok(await http.post("/v1/groups/line-1:addMembers", json={"devices": [d1["name"], d2["name"]]},
                                      headers=op))
    assert added["added_devices"] == [d1["name"], d2["name"]]
    dynamic_add = await http.post(f"/v1/{pumps['name']}:addMembers", json={"devices": [d1["name"]]}, headers=op)
    assert dynamic_add.status_code == 400, dynamic_add.text  # FAILED_PRECONDITION maps to 400 too
    assert "DYNAMIC" in dynamic_add.text

    page = await _ok(await http.get("/v1/groups/line-1/members", params={"page_size": 1}, headers=viewer))
    assert [d["name"] for d in page["devices"]] == [d1["name"]] and page["next_page_token"]
    rest = await _ok(await http.get("/v1/groups/line-1/members",
                                    params={"page_size": 1, "page_token": page["next_page_token"]}, headers=viewer))
    assert [d["name"] for d in rest["devices"]] == [d2["name"]]
    matched = await _ok(await http.get(f"/v1/{pumps['name']}/members", params={"filter": 'display_name = "p2"'},
                                       headers=viewer))
    assert [d["name"] for d in matched["devices"]] == [d2["name"]]

    mine = await _ok(await http.get(f"/v1/{d1['name']}/groups", headers=viewer))
    assert [g["name"] for g in mine["groups"]] == [static["name"], pumps["name"]]
    removed = await _ok(await http.post("/v1/groups/line-1:removeMembers", json={"devices": [d1["name"]]},
                                        headers=op))
    assert removed["removed_devices"] == [d1["name"]]
    listed = await _ok(await http.get("/v1/groups", params={"filter": "type = STATIC"}, headers=viewer))
    assert [g["name"] for g in listed["groups"]] == [static["name"]]
    deleted = await http.delete(f"/v1/{pumps['name']}", headers=op)
    assert deleted.status_code == 200, deleted.text
    assert (await http.get(f"/v1/{pumps['name']}", headers=viewer)).status_code == 404
