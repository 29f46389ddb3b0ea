"""CommandService over REST through Envoy: create (request_id as a query parameter), get, list per
device and with `devices/-`, filter and pages, cancel, the `:wait` long poll, and validation errors
that name the field in the JSON error body."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import httpx
import pytest
from helpers import TenantTokens

from .commands_api_support import CommandableDevice, make_commandable_device
from .commands_api_support import commands_channel as commands_channel  # fixture
from .registry_grpc_support import admin_token as admin_token  # fixture
from .registry_grpc_support import channel as channel  # fixture
from .registry_grpc_support import tenant as tenant  # fixture
from .rest_support import auth, error_reason
from .rest_support import http as http  # fixture

pytestmark = pytest.mark.platform


@pytest.fixture
async def device(channel: grpc.aio.Channel, commands_channel: grpc.aio.Channel,
                 tenant: TenantTokens) -> CommandableDevice:
    return await make_commandable_device(channel, commands_channel, tenant)


def violations(body: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.BadRequest"):
            found.update({v["field"]: v["description"] for v in detail.get("field_violations", [])})
    return found


async def post_command(http: httpx.AsyncClient, device: CommandableDevice, body: dict[str, Any],
                       request_id: str = "") -> httpx.Response:
    params = {"request_id": request_id} if request_id else {}
    return await http.post(f"/v1/{device.name}/commands", json=body, params=params,
                           headers=auth(device.tenant.operator))


async def test_create_get_list_and_cancel(http: httpx.AsyncClient, device: CommandableDevice) -> None:
    created = await post_command(http, device, {"command": "reboot", "parameters": {"mode": "soft", "delay": 3},
                                                "ttl": "120s"})
    assert created.status_code == 200, created.text
    command = created.json()
    assert command["state"] == "COMMAND_STATE_PENDING" and command["ttl"] == "120s"
    assert command["parameters"] == {"mode": "soft", "delay": 3}
    viewer = auth(device.tenant.viewer)
    got = await http.get(f"/v1/{command['name']}", headers=viewer)
    assert got.status_code == 200 and got.json()["name"] == command["name"]

    second = (await post_command(http, device, {"command": "ping"})).json()
    page = (await http.get(f"/v1/{device.name}/commands", params={"page_size": 1, "order_by": "create_time"},
                           headers=viewer)).json()
    assert [c["name"] for c in page["commands"]] == [command["name"]] and page["next_page_token"]
    rest = (await http.get(f"/v1/{device.name}/commands", headers=viewer,
                           params={"page_size": 1, "order_by": "create_time",
                                   "page_token": page["next_page_token"]})).json()
    assert [c["name"] for c in rest["commands"]] == [second["name"]]
    pings = (await http.get("/v1/devices/-/commands", params={"filter": 'command = "ping"'}, headers=viewer)).json()
    assert [c["name"] for c in pings["commands"]] == [second["name"]]

    canceled = await http.post(f"/v1/{command['name']}:cancel", json={"reason": "not today"},
                               headers=auth(device.tenant.operator))
    assert canceled.status_code == 200 and canceled.json()["state"] == "COMMAND_STATE_CANCELED"
    again = await http.post(f"/v1/{command['name']}:cancel", json={}, headers=auth(device.tenant.operator))
    assert again.status_code == 400 and error_reason(again.json()) == "COMMAND_FINISHED"


async def test_idempotent_create(http: httpx.AsyncClient, device: CommandableDevice) -> None:
    body = {"command": "reboot", "parameters": {"mode": "hard"}}
    first = (await post_command(http, device, body, request_id="rest-1")).json()
    second = (await post_command(http, device, body, request_id="rest-1")).json()
    assert first["name"] == second["name"] and second["request_id"] == "rest-1"
    clash = await post_command(http, device, {**body, "parameters": {"mode": "soft"}}, request_id="rest-1")
    assert clash.status_code == 409 and error_reason(clash.json()) == "REQUEST_ID_REUSED"


async def test_validation_errors_name_the_field(http: httpx.AsyncClient, device: CommandableDevice) -> None:
    response = await post_command(http, device, {"command": "reboot", "parameters": {"mode": "warm", "delay": 99}})
    assert response.status_code == 400
    found = violations(response.json())
    assert set(found) == {"command.parameters.mode", "command.parameters.delay"}
    assert "must be at most 60" in found["command.parameters.delay"]
    unknown = await post_command(http, device, {"command": "explode"})
    assert unknown.status_code == 400 and "command.command" in violations(unknown.json())


async def test_wait_is_a_long_poll(http: httpx.AsyncClient, device: CommandableDevice) -> None:
    command = (await post_command(http, device, {"command": "reboot", "parameters": {"mode": "soft"}})).json()
    viewer = auth(device.tenant.viewer)
    started = time.monotonic()
    pending = await http.post(f"/v1/{command['name']}:wait", json={"timeout": "1.5s"}, headers=viewer)
    assert pending.status_code == 200 and pending.json()["state"] == "COMMAND_STATE_PENDING"
    assert 1.4 < time.monotonic() - started < 5

    waiting = asyncio.ensure_future(http.post(f"/v1/{command['name']}:wait", json={"timeout": "20s"},
                                              headers=viewer))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await http.post(f"/v1/{command['name']}:cancel", json={}, headers=auth(device.tenant.operator))
    finished = await asyncio.wait_for(waiting, 5)
    assert finished.json()["state"] == "COMMAND_STATE_CANCELED"
