"""Templates and sensors through the REST gateway (Envoy gRPC-JSON transcoding), as the ops console
sees them: create, list with a filter, clone, delete-in-use refused, auto sensors on device create,
and the module routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from helpers import PlatformLike, TenantTokens, create_tenant, unique_id

pytestmark = pytest.mark.platform

PUMP: dict[str, Any] = {
    "display_name": "Pump", "category": "pump",
    "metrics": [{"key": "pressure", "unit": "bar", "type": "METRIC_TYPE_NUMBER", "min": 0, "max": 16,
                 "required": True},
                {"key": "running", "type": "METRIC_TYPE_BOOL"}],
    "commands": [{"name": "set_speed", "parameters": {"type": "object"}, "default_timeout": "30s"}],
}


@pytest.fixture(scope="module")
async def channel(platform: PlatformLike) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["registry"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


@pytest.fixture(scope="module")
async def http(platform: PlatformLike) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.endpoints["rest"], timeout=15.0) as client:
        yield client


@pytest.fixture
async def tenant(channel: grpc.aio.Channel, platform: PlatformLike) -> TenantTokens:
    return await create_tenant(channel, str(platform.endpoints["admin_token"]))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(http: httpx.AsyncClient, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body, headers=auth(token))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_templates_over_rest(http: httpx.AsyncClient, tenant: TenantTokens, platform: PlatformLike) -> None:
    admin = str(platform.endpoints["admin_token"])
    system = await _post(http, f"/v1/templates?template_id={unique_id('sys')}", admin,
                         {**PUMP, "display_name": "System pump"})
    assert system["source"] == "TEMPLATE_SOURCE_SYSTEM"
    pump = await _post(http, "/v1/templates", tenant.admin, PUMP)
    valve = await _post(http, "/v1/templates", tenant.admin, {**PUMP, "display_name": "Valve", "category": "valve"})
    assert pump["source"] == "TEMPLATE_SOURCE_TENANT" and pump["metrics"][0]["max"] == 16
    assert pump["commands"][0]["default_timeout"] == "30s" and pump["etag"] == '"1"'

    listed = await http.get("/v1/templates", params={"filter": 'category = "pump"'}, headers=auth(tenant.viewer))
    assert listed.status_code == 200, listed.text
    names = [t["name"] for t in listed.json()["templates"]]
    assert {pump["name"], system["name"]} <= set(names) and valve["name"] not in names
    assert all(t["category"] == "pump" for t in listed.json()["templates"])

    copy = await _post(http, f"/v1/{system['name']}:clone", tenant.admin, {"display_name": "Our pump"})
    assert (copy["source"], copy["display_name"], copy["metrics"]) == ("TEMPLATE_SOURCE_TENANT", "Our pump",
                                                                       system["metrics"])
    read_only = await http.patch(f"/v1/{system['name']}", params={"update_mask": "model"}, json={"model": "x"},
                                 headers=auth(tenant.admin))
    assert read_only.status_code == 403, read_only.text

    device = await _post(http, "/v1/devices", tenant.operator, {"display_name": "P1", "template": copy["name"]})
    sensors = await http.get(f"/v1/{device['name']}/sensors", headers=auth(tenant.viewer))
    assert sensors.status_code == 200, sensors.text
    assert [(s["name"].rsplit("/", 1)[1], s["unit"], s["type"]) for s in sensors.json()["sensors"]] == [
        ("pressure", "bar", "METRIC_TYPE_NUMBER")]

    modules = await http.get(f"/v1/{device['name']}/modules", headers=auth(tenant.viewer))
    assert modules.status_code == 200 and modules.json()["modules"] == [], modules.text
    no_slot = await http.post(f"/v1/{device['name']}/modules", json={"slot": "io", "template": copy["name"]},
                              headers=auth(tenant.operator))
    assert no_slot.status_code == 400 and "module.slot" in no_slot.text, no_slot.text

    in_use = await http.delete(f"/v1/{copy['name']}", headers=auth(tenant.admin))
    assert in_use.status_code == 400 and "1 device(s)" in in_use.json()["message"], in_use.text
    done = await http.delete(f"/v1/{valve['name']}", headers=auth(tenant.admin))
    assert done.status_code == 200, done.text
    await http.delete(f"/v1/{system['name']}", headers=auth(admin))
