"""The device edge end to end: real NATS (JetStream + MQTT) with the auth callout, the edge replicas
and PostgreSQL from the launcher; devices are aiomqtt MQTT 3.1.1 clients. Registry events are
published onto JetStream as the registry's relay would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import httpx
import nats
import pytest
from helpers import PlatformLike, service_nats_url
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client.parser import text_string_to_metric_families

from muster.registry.v1 import events_pb2 as ev
from muster.registry.v1 import resources_pb2 as pb

from .edge_support import (
    connected,
    new_device,
    publish_registry_event,
    refused,
    set_secrets,
    set_state,
    wait_refused,
)

pytestmark = pytest.mark.platform

KICK_WITHIN = 5.0


def _code(granted: int | ReasonCode) -> int:
    """A SUBACK entry: granted QoS 0-2, or 0x80 (failure)."""
    return granted if isinstance(granted, int) else int(granted.value)


async def _next_message(mqtt: aiomqtt.Client, timeout: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in mqtt.messages:
            return message
    raise AssertionError("no message")


async def test_a_device_with_its_secret_connects_and_uses_its_own_topics(platform: PlatformLike) -> None:
    device = await new_device(platform)
    nc = await nats.connect(service_nats_url(platform))
    try:
        telemetry = await nc.subscribe(f"muster.v1.devices.{device.id}.telemetry")
        async with connected(platform, device) as mqtt:
            result = await mqtt.subscribe(f"muster/v1/devices/{device.id}/errors", qos=1)
            assert [_code(code) for code in result] == [1], result  # granted QoS 1
            await mqtt.publish(f"muster/v1/devices/{device.id}/telemetry", b'{"metrics": {"t": 1}}', qos=1)
            received = await telemetry.next_msg(timeout=5)
            assert received.data == b'{"metrics": {"t": 1}}'
            await nc.publish(f"muster.v1.devices.{device.id}.errors", b'{"code": "x"}')
            message = await _next_message(mqtt)
            assert (str(message.topic), message.payload) == (f"muster/v1/devices/{device.id}/errors", b'{"code": "x"}')
    finally:
        await nc.close()


async def test_wrong_secret_unknown_device_and_malformed_ids_are_refused(platform: PlatformLike) -> None:
    device = await new_device(platform)
    async with connected(platform, device):
        pass  # the projection has it now
    assert await refused(platform, device.id, "not-the-secret")
    assert await refused(platform, device.id, "")
    assert await refused(platform, "dev-never-registered", device.secret)
    assert await refused(platform, "muster.v1.devices.>", device.secret)


async def test_suspended_and_retired_devices_are_refused(platform: PlatformLike) -> None:
    suspended = await new_device(platform, state=pb.DEVICE_STATE_SUSPENDED)
    retired = await new_device(platform)
    async with connected(platform, retired):
        pass
    await set_state(platform, retired, pb.DEVICE_STATE_RETIRED)
    assert await wait_refused(platform, retired)
    # the suspended one never got in: give the projection the same time, then it must still be refused
    assert await refused(platform, suspended.id, suspended.secret)


async def test_outside_its_prefix_a_publish_is_dropped_and_a_subscribe_fails(platform: PlatformLike) -> None:
    device, other = await new_device(platform), await new_device(platform)
    nc = await nats.connect(service_nats_url(platform))
    try:
        theirs = await nc.subscribe(f"muster.v1.devices.{other.id}.>")
        mine = await nc.subscribe(f"muster.v1.devices.{device.id}.>")
        async with connected(platform, device) as mqtt:
            await mqtt.publish(f"muster/v1/devices/{other.id}/telemetry", b"{}", qos=1)  # still PUBACKed
            await mqtt.publish(f"muster/v1/devices/{device.id}/telemetry", b"{}", qos=1)
            assert (await mine.next_msg(timeout=5)).subject == f"muster.v1.devices.{device.id}.telemetry"
            with pytest.raises(nats.errors.TimeoutError):
                await theirs.next_msg(timeout=0.5)
            result = await mqtt.subscribe(f"muster/v1/devices/{other.id}/#", qos=1)
            assert [_code(code) for code in result] == [0x80], result
    finally:
        await nc.close()


async def _kicked_within(mqtt: aiomqtt.Client, seconds: float) -> float:
    """Seconds until the broker cut the connection (fails if it did not within `seconds`)."""
    started = time.monotonic()
    with pytest.raises(aiomqtt.MqttError):
        async with asyncio.timeout(seconds):
            async for _ in mqtt.messages:
                pass
    return time.monotonic() - started


async def test_suspending_a_connected_device_kicks_it_within_5s_and_it_cannot_reconnect(
        platform: PlatformLike) -> None:
    device = await new_device(platform)
    async with connected(platform, device) as mqtt:
        await mqtt.subscribe(f"muster/v1/devices/{device.id}/commands/+", qos=1)
        await set_state(platform, device, pb.DEVICE_STATE_SUSPENDED)
        took = await _kicked_within(mqtt, KICK_WITHIN)
    assert took < KICK_WITHIN
    assert await refused(platform, device.id, device.secret)


async def test_rotation_with_revocation_kicks_and_only_the_new_secret_works(platform: PlatformLike) -> None:
    device = await new_device(platform)
    async with connected(platform, device) as mqtt:
        await mqtt.subscribe(f"muster/v1/devices/{device.id}/errors", qos=0)
        await set_secrets(platform, device, "the-new-secret-0123456789abcdef", revoke=True)
        await _kicked_within(mqtt, KICK_WITHIN)
    assert await refused(platform, device.id, device.secret)
    async with connected(platform, device, secret="the-new-secret-0123456789abcdef"):
        pass


async def test_a_secret_past_its_grace_expiry_is_refused(platform: PlatformLike) -> None:
    device = await new_device(platform)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await set_secrets(platform, device, device.secret, "fresh-secret-0123456789abcdef", expire={device.secret: past})
    async with connected(platform, device, secret="fresh-secret-0123456789abcdef"):
        pass
    assert await refused(platform, device.id, device.secret)


async def test_deleting_a_device_kicks_it_and_late_events_do_not_bring_it_back(platform: PlatformLike) -> None:
    device = await new_device(platform)
    async with connected(platform, device) as mqtt:
        await mqtt.subscribe(f"muster/v1/devices/{device.id}/errors", qos=0)
        await publish_registry_event(platform, device.tenant, device.name, ev.DeviceDeleted(name=device.name))
        await _kicked_within(mqtt, KICK_WITHIN)
    await set_secrets(platform, device, device.secret)  # a credentials event after the deletion
    await asyncio.sleep(1.0)  # time for the projection to (not) apply it
    assert await refused(platform, device.id, device.secret)


def _edge_pids(platform: PlatformLike) -> list[int]:
    pids = json.loads((Path(platform.data_dir) / "run" / "pids.json").read_text())["services"]
    found = [int(pid) for name, pid in pids.items() if name.startswith("edge") and pid]
    assert len(found) >= 2, f"expected the edge's replicas in {pids}"
    return found


async def test_with_no_responder_answering_a_device_is_refused_never_let_in(platform: PlatformLike) -> None:
    device = await new_device(platform)
    async with connected(platform, device):
        pass  # known and allowed while the responders run
    pids = _edge_pids(platform)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert await refused(platform, device.id, device.secret)
        assert time.monotonic() - started < 15
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    async with connected(platform, device):
        pass  # and back once they answer again


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def _callouts(platform: PlatformLike, labels: dict[str, str]) -> float:
    metrics = {name: address for name, address in platform.endpoints["metrics"].items() if name.startswith("edge")}
    async with httpx.AsyncClient(timeout=5) as http:
        texts = [(await http.get(f"http://{address}/metrics")).text for address in metrics.values()]
    return sum(_sample(text, "muster_edge_callouts_total", labels) for text in texts)


async def test_callouts_are_counted_by_result_and_reason(platform: PlatformLike) -> None:
    device = await new_device(platform)
    async with connected(platform, device):
        pass
    allowed = await _callouts(platform, {"result": "allowed", "reason": "ok"})
    bad = await _callouts(platform, {"result": "refused", "reason": "bad_secret"})
    async with connected(platform, device):
        pass
    assert await refused(platform, device.id, "wrong")
    assert await _callouts(platform, {"result": "allowed", "reason": "ok"}) == allowed + 1
    assert await _callouts(platform, {"result": "refused", "reason": "bad_secret"}) == bad + 1
