"""`muster simulate` against the real platform: the devices register through RegisterDevice, connect
over MQTT through the edge's auth callout, their telemetry becomes queryable through ingest, the
acknowledged count it prints is exactly what ingest stored (nothing lost), and a rerun with the same
state file registers no new device."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers import RPC_TIMEOUT, PlatformLike, bearer

from muster.ingest.v1 import telemetry_service_pb2 as tel
from muster.ingest.v1 import telemetry_service_pb2_grpc as tel_grpc
from muster.simulator import fleet

from .test_cli import muster, tenant_admin

pytestmark = pytest.mark.platform


def simulate(platform: PlatformLike, state: Path, token: str, *extra: str) -> tuple[dict[str, Any], str]:
    result = muster(platform, "simulate", "--devices", "5", "--rate", "20", "--heartbeat", "1",
                    "--report-every", "1", "--state", str(state), "--json", *extra, token=token)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1]), result.output


async def stored_messages(platform: PlatformLike, token: str, device_ids: list[str]) -> int:
    """Telemetry messages ingest made queryable: every message carries one temperature point."""
    total = 0
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["ingest"]) as channel:
        stub = tel_grpc.TelemetryServiceStub(channel)
        for device_id in device_ids:
            page_token = ""
            while True:
                response = await stub.QueryTelemetry(
                    tel.QueryTelemetryRequest(device=f"devices/{device_id}", metrics=["temperature"],
                                              page_size=1000, page_token=page_token),
                    metadata=bearer(token), timeout=RPC_TIMEOUT)
                total += len(response.points)
                page_token = response.next_page_token
                if not page_token:
                    break
    return total


async def latest_metrics(platform: PlatformLike, token: str, device_id: str) -> set[str]:
    async with grpc.aio.insecure_channel(platform.endpoints["grpc"]["ingest"]) as channel:
        response = await tel_grpc.TelemetryServiceStub(channel).ListLatestTelemetry(
            tel.ListLatestTelemetryRequest(device=f"devices/{device_id}"), metadata=bearer(token), timeout=RPC_TIMEOUT)
    return {v.metric for v in response.values}


async def until_stored(platform: PlatformLike, token: str, device_ids: list[str], expected: int,
                       within: float = 30.0) -> int:
    deadline = time.monotonic() + within
    while await stored_messages(platform, token, device_ids) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # and nothing more turns up later (no duplicates)
    return await stored_messages(platform, token, device_ids)


def test_simulated_devices_publish_and_every_acknowledged_message_is_stored(
        platform: PlatformLike, tmp_path: Path) -> None:
    _, admin = tenant_admin(platform)
    state = tmp_path / "sim.json"
    report, output = simulate(platform, state, admin, "--duration", "4")
    assert "(5 newly registered" in output and "connected 5/5" in output
    devices = [d.id for d in fleet.load(state)]
    assert len(devices) == 5
    assert report["connected"] == 5 and report["errors"] == 0 and report["reconnects"] == 0
    assert report["acked"] == report["published"] >= 60  # ~80 offered in 4 s at 20/s
    assert report["heartbeats"] >= 5

    assert asyncio.run(until_stored(platform, admin, devices, report["acked"])) == report["acked"]
    assert asyncio.run(latest_metrics(platform, admin, devices[0])) == {
        "temperature", "humidity", "battery", "door_open", "mode",  # telemetry
        "health.battery", "health.rssi", "health.uptime"}  # heartbeats, kept as telemetry

    again, output = simulate(platform, state, admin, "--duration", "1")
    assert "(0 newly registered" in output
    assert [d.id for d in fleet.load(state)] == devices
    assert again["connected"] == 5 and again["acked"] == again["published"] > 0
    expected = report["acked"] + again["acked"]
    assert asyncio.run(until_stored(platform, admin, devices, expected)) == expected
