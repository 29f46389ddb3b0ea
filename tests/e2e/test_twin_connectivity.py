"""Connectivity end to end with real MQTT clients as devices: NATS's own connect/disconnect events
(made durable by the twin) and the device's will give presence with its reason and a connection log;
presence changes are published as events. Real NATS (JetStream + MQTT, auth callout), PostgreSQL, twin."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time

import grpc
import nats
import pytest
from helpers import PlatformLike, service_nats_url
from nats.aio.msg import Msg

from muster.events.v1.event_pb2 import Event
from muster.twin.v1 import connectivity_service_pb2 as pb
from muster.twin.v1 import events_pb2 as tev

from .connectivity_support import connectivity, log_of, until
from .edge_support import connected, mqtt_address
from .twin_support import TwinStub, twin_device
from .twin_support import twin_channel as twin_channel  # fixture
from .twin_support import twins as twins  # fixture

pytestmark = pytest.mark.platform


async def test_connect_and_clean_disconnect_are_logged_with_presence_and_events(
        platform: PlatformLike, twins: TwinStub, twin_channel: grpc.aio.Channel) -> None:
    device = await twin_device(platform, twins)
    before = await connectivity(twin_channel, device)
    assert before.presence == tev.PRESENCE_NEVER_SEEN
    nc = await nats.connect(service_nats_url(platform))
    events: list[tev.DevicePresenceChanged] = []

    async def collect(msg: Msg) -> None:
        event = Event.FromString(msg.data)
        payload = tev.DevicePresenceChanged()
        event.payload.Unpack(payload)
        if payload.device == f"devices/{device.id}":
            events.append(payload)

    sub = await nc.jetstream().subscribe(f"muster.events.twin.{device.device.tenant}.DevicePresenceChanged",
                                         cb=collect, ordered_consumer=True)
    try:
        async with connected(platform, device.device):
            online = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_ONLINE)
            assert online.reason == "connected" and online.session.protocol == "mqtt"
            assert online.session.client_id.startswith(device.id)
        offline = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_OFFLINE)
        assert offline.reason == "client_disconnect" and offline.disconnects_24h == 1
        assert offline.abnormal_disconnects_72h == 0 and "offline since" in offline.description
        log = await log_of(twin_channel, device)
        assert [e.kind for e in log] == [pb.CONNECTION_EVENT_KIND_DISCONNECTED, pb.CONNECTION_EVENT_KIND_CONNECTED]
        assert log[0].reason == pb.DISCONNECT_REASON_CLIENT_DISCONNECT and log[0].detail == "Client Closed"
        assert log[0].session_id == log[1].session_id == online.session.session_id
        deadline = time.monotonic() + 10
        while len(events) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [(e.previous, e.presence, e.reason) for e in events] == [
            (tev.PRESENCE_NEVER_SEEN, tev.PRESENCE_ONLINE, "connected"),
            (tev.PRESENCE_ONLINE, tev.PRESENCE_OFFLINE, "client_disconnect")]
    finally:
        await sub.unsubscribe()
        await nc.close()


DEVICE_PROCESS = textwrap.dedent("""
    import asyncio, sys, aiomqtt
    host, port, device, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    async def main():
        will = aiomqtt.Will(f"muster/v1/devices/{device}/status", b'{"online": false}', qos=1)
        async with aiomqtt.Client(host, port, username=device, password=secret, identifier=device + "-killed",
                                  protocol=aiomqtt.ProtocolVersion.V311, will=will) as mqtt:
            await mqtt.publish(f"muster/v1/devices/{device}/status", b'{"online": true}', qos=1)
            print("up", flush=True)
            await asyncio.sleep(3600)
    asyncio.run(main())
""")


async def test_kill_9_of_the_device_is_a_lost_connection_with_its_will(
        platform: PlatformLike, twins: TwinStub, twin_channel: grpc.aio.Channel) -> None:
    device = await twin_device(platform, twins)
    host, port = mqtt_address(platform)
    nc = await nats.connect(service_nats_url(platform))
    wills: list[bytes] = []

    async def on_status(msg: Msg) -> None:
        wills.append(msg.data)

    await nc.subscribe(f"muster.v1.devices.{device.id}.status", cb=on_status)
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", DEVICE_PROCESS, host, str(port), device.id,
                                                   device.device.secret, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 15)).strip() == b"up"
        await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_ONLINE)
        process.send_signal(signal.SIGKILL)  # no DISCONNECT: the kernel closes the socket
        await asyncio.wait_for(process.wait(), 10)
        lost = await until(twin_channel, device, lambda c: c.presence == tev.PRESENCE_OFFLINE
                           and c.session.disconnect_reason != pb.DISCONNECT_REASON_UNSPECIFIED)
        assert lost.reason == "connection_lost", lost
        assert lost.abnormal_disconnects_24h == 1
        assert b'{"online": false}' in wills  # the broker published the will
        log = await log_of(twin_channel, device)
        assert log[0].kind == pb.CONNECTION_EVENT_KIND_DISCONNECTED
        assert log[0].reason == pb.DISCONNECT_REASON_CONNECTION_LOST and log[0].client_id == f"{device.id}-killed"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await nc.close()
