"""The platform's own MQTT login against a real nats-server configured by the launcher: it publishes
retained QoS 1 messages on device topics, is confined to them, and rides out a server restart."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from nats.errors import NoServersError

from muster.launcher import nats as launcher_nats
from muster.launcher.ports import free_ports
from muster.launcher.secrets import PlatformSecrets, new_account_seed, new_password
from muster.launcher.services import ServiceSpec
from muster.runtime.device_publisher import DeliveryFailed, DevicePublisher
from muster.runtime.mqtt_connection import MqttConnection

pytestmark = pytest.mark.platform

PROBE = ServiceSpec(name="probe", grpc_services=(), device_publisher=True)


@dataclass
class Server:
    store: Path
    ports: launcher_nats.NatsPorts
    secrets: PlatformSecrets
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.store / "nats.json"
        launcher_nats.write_config(config, launcher_nats.build_config(self.store / "js", self.ports, self.secrets,
                                                                      [PROBE]))
        self.process = subprocess.Popen([str(launcher_nats.binary()), "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    @property
    def mqtt_url(self) -> str:
        return launcher_nats.device_mqtt_url(self.ports.mqtt, self.secrets, PROBE)

    async def ready(self) -> None:
        never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(30):
            await launcher_nats.wait_ready(self.ports, never)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    client, mqtt, monitor = free_ports(3)
    secrets = PlatformSecrets(postgres_superuser="", postgres_owner="", nats_sys=new_password(),
                              nats_services={PROBE.name: new_password()}, nats_callout_seed=new_account_seed())
    running = Server(tmp_path, launcher_nats.NatsPorts(client=client, mqtt=mqtt, monitor=monitor), secrets)
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def publisher(server: Server) -> AsyncIterator[DevicePublisher]:
    await server.ready()
    started = DevicePublisher.from_url(server.mqtt_url, ack_timeout=3.0)
    await started.start()
    yield started
    await started.close()


async def _subscriber(server: Server, topic: str) -> tuple[MqttConnection, asyncio.Queue[tuple[str, bytes]]]:
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    connection = MqttConnection(on_ack=lambda _mid: None, on_message=lambda t, p: received.put_nowait((t, p)))
    password = server.secrets.nats_services[PROBE.name]
    await connection.connect("127.0.0.1", server.ports.mqtt, "probe-subscriber", PROBE.mqtt_user, password)
    connection.subscribe(topic)
    return connection, received


async def test_a_retained_publish_reaches_a_device_that_subscribes_later(server: Server,
                                                                        publisher: DevicePublisher) -> None:
    await publisher.publish("d1", "twin/desired", b'{"version": 1}', retain=True)
    await publisher.publish("d1", "twin/desired", b'{"version": 2}', retain=True)
    connection, received = await _subscriber(server, "muster/v1/devices/d1/twin/desired")
    try:
        topic, payload = await asyncio.wait_for(received.get(), 5)
        assert (topic, payload) == ("muster/v1/devices/d1/twin/desired", b'{"version": 2}')
    finally:
        await connection.disconnect()


async def test_the_platform_login_is_confined_to_device_topics_and_to_mqtt(server: Server,
                                                                          publisher: DevicePublisher) -> None:
    password = server.secrets.nats_services[PROBE.name]
    service = await nats.connect(f"nats://{PROBE.nats_user}:{password}@127.0.0.1:{server.ports.client}")
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def record(msg: Msg) -> None:
        seen.put_nowait(msg.subject)

    try:
        await service.subscribe("muster.v1.>", cb=record)
        await service.flush()
        connection, _ = await _subscriber(server, "muster/v1/devices/d9/nothing")
        try:  # same connection, in order: were the first delivered, it would arrive first
            connection.publish("muster/v1/elsewhere", b"{}", qos=0)
            connection.publish("muster/v1/devices/d9/commands/c1", b"{}", qos=0)
            assert await asyncio.wait_for(seen.get(), 5) == "muster.v1.devices.d9.commands.c1"
        finally:
            await connection.disconnect()
    finally:
        await service.close()
    with pytest.raises((nats.errors.Error, NoServersError, OSError)):
        await nats.connect(f"nats://{PROBE.mqtt_user}:{password}@127.0.0.1:{server.ports.client}",
                           allow_reconnect=False, connect_timeout=3, max_reconnect_attempts=0)


async def test_publish_fails_fast_while_the_server_is_down_and_works_after_it_returns(
        server: Server, publisher: DevicePublisher) -> None:
    server.stop()
    with pytest.raises(DeliveryFailed):
        await publisher.publish("d1", "commands/c1", b"{}")
    server.start()
    await server.ready()
    async with asyncio.timeout(20):
        while True:
            try:
                await publisher.publish("d1", "commands/c1", b"{}")
                break
            except DeliveryFailed:
                await asyncio.sleep(0.2)
