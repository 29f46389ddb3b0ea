"""The twin end to end with a real MQTT client as the device: desired state pushed (retained) to the
device, its reports merged until the delta converges, twin/get answered, bad input refused on the
errors topic. Real NATS (JetStream + MQTT, the auth callout), PostgreSQL and the twin service."""

from __future__ import annotations

import pytest
from helpers import PlatformLike

from muster.twin.v1 import twin_resources_pb2 as pb

from .edge_support import connected
from .twin_support import TwinStub, get_twin, next_json, twin_device, until_twin, update_desired
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


async def test_desired_reaches_the_device_and_its_report_converges(platform: PlatformLike, twins: TwinStub) -> None:
    device = await twin_device(platform, twins)
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("twin/desired"), qos=1)
        twin = await update_desired(twins, device, {"fan": {"speed": 1200}, "mode": "eco"})
        assert not twin.delta.in_sync
        pushed = await next_json(mqtt, device.topic("twin/desired"))
        assert pushed == {"version": 1, "state": {"fan": {"speed": 1200}, "mode": "eco"},
                          "delta": {"fan": {"speed": 1200}, "mode": "eco"}}
        await mqtt.publish(device.topic("twin/reported"), b'{"state": {"fan": {"speed": 1200}, "firmware": "1.4"}}',
                           qos=1)
        half = await until_twin(twins, device, lambda t: t.reported_version == 1)
        statuses = {c.path: c.status for c in half.delta.convergence}
        assert statuses == {"/fan/speed": pb.CONVERGENCE_APPLIED, "/mode": pb.CONVERGENCE_PENDING}
        await mqtt.publish(device.topic("twin/reported"), b'{"state": {"mode": "eco"}}', qos=1)
        done = await until_twin(twins, device, lambda t: t.delta.in_sync)
    assert done.reported_version == 2 and dict(done.reported) == {"fan": {"speed": 1200}, "firmware": "1.4",
                                                                  "mode": "eco"}
    kinds = {e.path: e.kind for e in done.delta.entries}
    assert kinds == {"/fan/speed": pb.DELTA_KIND_UNCHANGED, "/mode": pb.DELTA_KIND_UNCHANGED,
                     "/firmware": pb.DELTA_KIND_REMOVED}
    assert set(done.reported_metadata) == {"/fan/speed", "/firmware", "/mode"}


async def test_a_device_offline_during_the_change_gets_the_latest_on_reconnect(platform: PlatformLike,
                                                                               twins: TwinStub) -> None:
    device = await twin_device(platform, twins)
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("twin/desired"), qos=1)
        await update_desired(twins, device, {"led": "red"})
        assert (await next_json(mqtt, device.topic("twin/desired")))["version"] == 1
    # Offline: two more changes; the device must get the newest only (retained), not miss it.
    await update_desired(twins, device, {"led": "green"})
    await update_desired(twins, device, {"led": "blue", "interval": 30})
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("twin/desired"), qos=1)
        latest = await next_json(mqtt, device.topic("twin/desired"))
    assert latest["version"] == 3 and latest["state"] == {"led": "blue", "interval": 30}


async def test_twin_get_is_answered_on_get_accepted(platform: PlatformLike, twins: TwinStub) -> None:
    device = await twin_device(platform, twins)
    await update_desired(twins, device, {"target": 21.5})
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("twin/get/accepted"), qos=1)
        await mqtt.publish(device.topic("twin/get"), b"{}", qos=1)
        answer = await next_json(mqtt, device.topic("twin/get/accepted"))
    assert answer == {"desired": {"target": 21.5}, "desired_version": 1, "reported": {}, "reported_version": 0,
                      "delta": {"target": 21.5}}


@pytest.mark.parametrize(("payload", "code"), [(b"{not json", "NOT_JSON"), (b'{"state": [1]}', "INVALID_FIELD"),
                                               (b'"hello"', "NOT_OBJECT")])
async def test_a_bad_report_is_answered_on_errors_and_changes_nothing(platform: PlatformLike, twins: TwinStub,
                                                                     payload: bytes, code: str) -> None:
    device = await twin_device(platform, twins)
    async with connected(platform, device.device) as mqtt:
        await mqtt.subscribe(device.topic("errors"), qos=1)
        await mqtt.publish(device.topic("twin/reported"), payload, qos=1)
        error = await next_json(mqtt, device.topic("errors"))
        await mqtt.publish(device.topic("twin/reported"), b'{"state": {"ok": true}}', qos=1)
        after = await until_twin(twins, device, lambda t: t.reported_version > 0)
    assert error["topic"] == device.topic("twin/reported") and error["code"] == code
    assert dict(after.reported) == {"ok": True} and after.reported_version == 1  # the bad one changed nothing
    assert (await get_twin(twins, device)).reported_version == 1
