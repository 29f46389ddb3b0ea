"""Telemetry end to end: published on the device subjects, captured by JetStream, stored by ingest,
queried over gRPC and REST; malformed input answered on the device's errors topic; tenants isolated."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import httpx
import orjson
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, TenantTokens, bearer, create_tenant, error_reason
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from muster.ingest.v1 import telemetry_service_pb2 as tel

from .ingest_support import bus as bus  # fixture
from .ingest_support import create_devices, until_projected
from .ingest_support import ingest as ingest  # fixture
from .ingest_support import registry as registry  # fixture
from .ingest_support import telemetry as telemetry  # fixture
from .ingest_support import tenant as tenant  # fixture

if TYPE_CHECKING:
    from .ingest_support import Telemetry

pytestmark = pytest.mark.platform


def subject(device_id: str, topic: str = "telemetry") -> str:
    return f"muster.v1.devices.{device_id}.{topic}"


async def points_of(telemetry: Telemetry, tenant: TenantTokens, device_id: str, expected: int,
                    timeout: float = 15.0, **request: object) -> list[tel.TelemetryPoint]:
    """Every raw point of the device (all pages), once at least `expected` are there."""
    deadline = time.monotonic() + timeout
    while True:
        points: list[tel.TelemetryPoint] = []
        token = ""
        while True:
            response = await telemetry.QueryTelemetry(
                tel.QueryTelemetryRequest(device=f"devices/{device_id}", page_token=token, **request),  # type: ignore[arg-type]
                metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
            points += response.points
            token = response.next_page_token
            if not token:
                break
        if len(points) >= expected or time.monotonic() > deadline:
            return points
        await asyncio.sleep(0.2)


async def test_published_points_are_queryable_raw_paginated_bucketed_and_latest(
        platform: PlatformLike, registry: grpc.aio.Channel, telemetry: Telemetry, tenant: TenantTokens,
        bus: NATS) -> None:
    (device,) = await create_devices(registry, tenant, 1)
    await until_projected(telemetry, tenant, [device])
    js = bus.jetstream()
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    for i in range(6):  # two one-minute buckets, three points each
        ts = base + timedelta(minutes=i // 3, seconds=10 * i)
        await js.publish(subject(device), orjson.dumps(
            {"ts": int(ts.timestamp() * 1000), "metrics": {"temp": 20.0 + i, "door": i % 2 == 0, "mode": f"m{i}"}}))
    await js.publish(subject(device), orjson.dumps([{"ts": base.isoformat(), "metrics": {"late": 1}}]))

    points = await points_of(telemetry, tenant, device, 19, page_size=5)
    assert len(points) == 19
    temps = [p.value.number_value for p in points if p.metric == "temp"]
    assert temps == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]  # oldest first, across pages
    assert {p.value.WhichOneof("kind") for p in points} == {"number_value", "bool_value", "string_value"}

    only = await points_of(telemetry, tenant, device, 6, metrics=["temp"])
    assert {p.metric for p in only} == {"temp"}

    request = tel.QueryTelemetryRequest(device=f"devices/{device}", metrics=["temp", "mode"])
    request.bucket_width.FromTimedelta(timedelta(minutes=1))
    buckets = (await telemetry.QueryTelemetry(request, metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)).buckets
    temp = [b for b in buckets if b.metric == "temp"]
    assert [(b.count, b.avg, b.min, b.max, b.sum) for b in temp] == [(3, 21.0, 20.0, 22.0, 63.0),
                                                                     (3, 24.0, 23.0, 25.0, 72.0)]
    assert [(b.first.number_value, b.last.number_value) for b in temp] == [(20.0, 22.0), (23.0, 25.0)]
    mode = [b for b in buckets if b.metric == "mode"]
    assert [(b.count, b.HasField("avg"), b.first.string_value, b.last.string_value) for b in mode] == [
        (3, False, "m0", "m2"), (3, False, "m3", "m5")]

    latest = await telemetry.ListLatestTelemetry(tel.ListLatestTelemetryRequest(device=f"devices/{device}"),
                                                 metadata=bearer(tenant.viewer), timeout=RPC_TIMEOUT)
    by_metric = {v.metric: v for v in latest.values}
    assert by_metric["temp"].value.number_value == 25.0 and by_metric["mode"].value.string_value == "m5"
    assert set(by_metric) == {"temp", "door", "mode", "late"}

    async with httpx.AsyncClient(base_url=platform.endpoints["rest"], timeout=15.0) as http:
        response = await http.get(f"/v1/devices/{device}/telemetry",
                                  params={"metrics": "temp", "bucket_width": "60s", "aggregations": "AGGREGATION_MAX"},
                                  headers={"Authorization": f"Bearer {tenant.viewer}"})
        assert response.status_code == 200, response.text
        assert [b["max"] for b in response.json()["buckets"]] == [22.0, 25.0]
        assert all("avg" not in b for b in response.json()["buckets"])


async def rejections(platform: PlatformLike) -> dict[str, float]:
    """muster_ingest_rejections_total by reason, from ingest's Prometheus endpoint."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        text = (await http.get(f"http://{platform.endpoints['metrics']['ingest']}/metrics")).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("muster_ingest_rejections_total{") and 'stream="MUSTER_TELEMETRY"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            found[reason] = float(line.rsplit(" ", 1)[1])
    return found


async def test_malformed_messages_get_their_error_and_the_valid_part_is_kept(
        platform: PlatformLike, registry: grpc.aio.Channel, telemetry: Telemetry, tenant: TenantTokens,
        bus: NATS) -> None:
    before = await rejections(platform)
    (device,) = await create_devices(registry, tenant, 1)
    await until_projected(telemetry, tenant, [device])
    errors: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def on_error(msg: Msg) -> None:
        await errors.put(orjson.loads(msg.data))

    await bus.subscribe(subject(device, "errors"), cb=on_error)
    js = bus.jetstream()
    future = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
    bad = [b"{not json", b"[1, 2]", orjson.dumps({"ts": future, "metrics": {"x": 1}}),
           orjson.dumps({"metrics": {"x": {"nested": 1}, "kept": 7}}), b"x" * (65 * 1024)]
    for payload in bad:
        await js.publish(subject(device), payload)
    got = [await asyncio.wait_for(errors.get(), 15) for _ in bad]
    assert [e["code"] for e in got] == ["NOT_JSON", "NOT_OBJECT", "TIMESTAMP_OUT_OF_RANGE", "INVALID_VALUE",
                                        "PAYLOAD_TOO_LARGE"]
    assert {e["topic"] for e in got} == {f"muster/v1/devices/{device}/telemetry"}
    assert all(e["message"] for e in got)

    await js.publish(subject(device), orjson.dumps({"metrics": {"after": 1}}))  # still running
    points = await points_of(telemetry, tenant, device, 2)
    assert sorted(p.metric for p in points) == ["after", "kept"]
    after = await rejections(platform)
    for reason in ("NOT_JSON", "NOT_OBJECT", "TIMESTAMP_OUT_OF_RANGE", "INVALID_VALUE", "PAYLOAD_TOO_LARGE"):
        assert after.get(reason, 0) - before.get(reason, 0) >= 1, f"{reason} not counted"


async def test_a_tenant_cannot_read_another_tenants_telemetry(
        platform: PlatformLike, registry: grpc.aio.Channel, telemetry: Telemetry, tenant: TenantTokens,
        bus: NATS) -> None:
    (device,) = await create_devices(registry, tenant, 1)
    await until_projected(telemetry, tenant, [device])
    await bus.jetstream().publish(subject(device), orjson.dumps({"metrics": {"secret": 42}}))
    assert len(await points_of(telemetry, tenant, device, 1)) == 1
    other = await create_tenant(registry, str(platform.endpoints["admin_token"]))
    for call in (telemetry.QueryTelemetry(tel.QueryTelemetryRequest(device=f"devices/{device}"),
                                          metadata=bearer(other.admin), timeout=RPC_TIMEOUT),
                 telemetry.ListLatestTelemetry(tel.ListLatestTelemetryRequest(device=f"devices/{device}"),
                                               metadata=bearer(other.admin), timeout=RPC_TIMEOUT)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(caught.value) == "DEVICE_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # no token, no data
        await telemetry.QueryTelemetry(tel.QueryTelemetryRequest(device=f"devices/{device}"), timeout=RPC_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
