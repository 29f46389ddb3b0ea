"""One simulated device: connects with its id and secret and the will `{"online": false}`, subscribes
to its errors topic, announces itself on the status topic, sends heartbeats, and publishes telemetry
when the engine gives it a turn. Reconnects with a jittered back-off when the connection drops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from muster.runtime.mqtt_connection import MqttConnection, MqttRefused, Will
from muster.simulator.metrics import Readings, birth, telemetry
from muster.simulator.stats import Counters

TOPIC_PREFIX = "muster/v1/devices"
OFFLINE = b'{"online": false}'


@dataclass(frozen=True)
class Credentials:
    """What registration gave a device: its id (the MQTT username) and secret (the password)."""

    id: str
    secret: str
    serial: str = ""


def topic(device_id: str, leaf: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/{leaf}"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class SimulatedDevice:
    """`ready()` says whether it can take a telemetry message now (connected, window not full)."""

    def __init__(self, credentials: Credentials, counters: Counters, *, window: int = 100) -> None:
        self.credentials = credentials
        self.readings = Readings.seeded(credentials.id)
        self._counters, self._window = counters, window
        self._client: MqttConnection | None = None
        self._telemetry_ids: set[int] = set()
        self.connected = False
        self.ever_connected = asyncio.Event()
        self._settled = asyncio.Event()  # set whenever no telemetry awaits its PUBACK

    def ready(self) -> bool:
        return self.connected and self._client is not None and len(self._client.in_flight) < self._window

    @property
    def pending(self) -> int:
        return len(self._telemetry_ids)

    def send_telemetry(self) -> None:
        assert self._client is not None
        body = telemetry(self.readings.step(), int(time.time() * 1000))
        self._telemetry_ids.add(self._client.publish(topic(self.credentials.id, "telemetry"), _json(body)))
        self._settled.clear()
        self._counters.published += 1

    def _on_ack(self, packet_id: int) -> None:
        if packet_id in self._telemetry_ids:
            self._telemetry_ids.discard(packet_id)
            self._counters.acked += 1
            if not self._telemetry_ids:
                self._settled.set()

    def _on_message(self, topic_: str, payload: bytes) -> None:
        if topic_.endswith("/errors"):
            self._counters.errors += 1

    async def run(self, host: str, port: int, stop: asyncio.Event, *, heartbeat_seconds: float) -> None:
        """Stay connected until `stop`; then say goodbye (a clean DISCONNECT: the broker drops the will)."""
        first = True
        while not stop.is_set():
            client = MqttConnection(self._on_ack, self._on_message)
            try:
                await client.connect(host, port, f"{self.credentials.id}-sim", self.credentials.id,
                                     self.credentials.secret,
                                     will=Will(topic(self.credentials.id, "status"), OFFLINE))
            except (OSError, MqttRefused, TimeoutError):
                await self._back_off(stop)
                continue
            if not first:
                self._counters.reconnects += 1
            first = False
            self._client, self._telemetry_ids = client, set()
            client.subscribe(topic(self.credentials.id, "errors"))
            client.publish(topic(self.credentials.id, "status"), _json(birth(heartbeat_seconds)))
            self.connected = True
            self.ever_connected.set()
            await self._live(client, stop, heartbeat_seconds)
            self.connected = False
            if stop.is_set():
                await self._goodbye(client)
            else:
                await client.disconnect()
                await self._back_off(stop)

    async def _live(self, client: MqttConnection, stop: asyncio.Event, heartbeat_seconds: float) -> None:
        """Heartbeats until the connection drops or the run stops."""
        closed = asyncio.create_task(client.closed.wait())
        stopping = asyncio.create_task(stop.wait())
        try:
            while not (closed.done() or stopping.done()):
                await asyncio.wait({closed, stopping}, timeout=heartbeat_seconds * random.uniform(0.9, 1.1))
                if not (closed.done() or stopping.done()):
                    with contextlib.suppress(ConnectionError):
                        client.publish(topic(self.credentials.id, "heartbeat"), _json(self.readings.heartbeat()))
                        self._counters.heartbeats += 1
        finally:
            for task in (closed, stopping):
                task.cancel()

    async def _goodbye(self, client: MqttConnection, settle: float = 10.0) -> None:
        """Wait (bounded) for outstanding PUBACKs, then disconnect cleanly. No `{"online": false}` of its
        own: that is the will's, which the twin reads as a lost connection."""
        if self._telemetry_ids and not client.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), settle)
        await client.disconnect()

    @staticmethod
    async def _back_off(stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 + random.random())
