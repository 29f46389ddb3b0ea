"""The twin over REST through Envoy: PATCH with a JSON merge patch and If-Match (stale: 412, never
merged), the etag in the query (stale: 409, as every other etag), revisions and :rollback."""

from __future__ import annotations

import httpx
import pytest
from helpers import PlatformLike

from .rest_support import auth, error_reason
from .rest_support import http as http  # fixture
from .twin_support import TwinStub, twin_device
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


async def test_if_match_writes_and_a_stale_one_is_412_never_merged(platform: PlatformLike, twins: TwinStub,
                                                                   http: httpx.AsyncClient) -> None:
    device = await twin_device(platform, twins)
    read = (await http.get(f"/v1/{device.twin}", headers=auth(device.viewer))).json()
    path = f"/v1/{device.twin}/desired"
    first = await http.patch(path, json={"mode": "eco", "fan": {"speed": 900}},
                             headers={**auth(device.operator), "If-Match": read["etag"]})
    assert first.status_code == 200, first.text
    assert first.json()["desired"] == {"mode": "eco", "fan": {"speed": 900}}
    stale = await http.patch(path, json={"mode": "boost"}, headers={**auth(device.operator), "If-Match": read["etag"]})
    assert stale.status_code == 412, stale.text
    assert error_reason(stale.json()) == "ETAG_MISMATCH"
    in_query = await http.patch(f"{path}?etag={read['etag']}", json={"mode": "boost"}, headers=auth(device.operator))
    assert in_query.status_code == 409 and error_reason(in_query.json()) == "ETAG_MISMATCH"
    now = (await http.get(f"/v1/{device.twin}", headers=auth(device.viewer))).json()
    assert now["desired"]["mode"] == "eco" and now["desired_version"] == "1"


async def test_no_etag_needs_force_and_viewers_cannot_write(platform: PlatformLike, twins: TwinStub,
                                                            http: httpx.AsyncClient) -> None:
    device = await twin_device(platform, twins)
    path = f"/v1/{device.twin}/desired"
    missing = await http.patch(path, json={"a": 1}, headers=auth(device.operator))
    assert missing.status_code == 400 and "etag" in missing.text
    assert (await http.patch(path, json={"a": 1}, headers=auth(device.viewer))).status_code == 403
    forced = await http.patch(f"{path}?force=true", json={"a": 1, "b": None}, headers=auth(device.operator))
    assert forced.status_code == 200 and forced.json()["desired"] == {"a": 1}


async def test_over_the_size_limit_is_400_naming_size_and_limit(platform: PlatformLike, twins: TwinStub,
                                                                http: httpx.AsyncClient) -> None:
    device = await twin_device(platform, twins)
    response = await http.patch(f"/v1/{device.twin}/desired?force=true", json={"blob": "x" * 40_000},
                                headers=auth(device.operator))
    assert response.status_code == 400
    assert "over the limit of 32768 bytes" in response.json()["message"]


async def test_revisions_and_rollback(platform: PlatformLike, twins: TwinStub, http: httpx.AsyncClient) -> None:
    device = await twin_device(platform, twins)
    path = f"/v1/{device.twin}/desired?force=true"
    for patch in ({"v": 1, "keep": True}, {"v": 2, "extra": "x"}):
        assert (await http.patch(path, json=patch, headers=auth(device.operator))).status_code == 200
    rolled = await http.post(f"/v1/{device.twin}:rollback", json={"revision": "1", "force": True},
                             headers=auth(device.operator))
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["desired"] == {"v": 1, "keep": True} and rolled.json()["desired_version"] == "3"
    page = (await http.get(f"/v1/{device.twin}/revisions?page_size=2", headers=auth(device.viewer))).json()
    assert [r["revision"] for r in page["revisions"]] == ["3", "2"] and page["next_page_token"]
    assert page["revisions"][0]["rollback_of"] == "1" and page["revisions"][0]["actor"].startswith("operator@")
    rest = (await http.get(f"/v1/{device.twin}/revisions?page_size=2&page_token={page['next_page_token']}",
                           headers=auth(device.viewer))).json()
    assert [r["revision"] for r in rest["revisions"]] == ["1"] and rest["next_page_token"] == ""
    delta = (await http.get(f"/v1/{device.twin}/delta", headers=auth(device.viewer))).json()
    assert delta["in_sync"] is False and {e["path"] for e in delta["entries"]} == {"/v", "/keep"}
