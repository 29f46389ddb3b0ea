"""The platform's own MQTT connection, for messages to devices that a plain NATS publish cannot carry.

A NATS publish on a device's subject reaches an online MQTT subscriber at QoS 0 only and is never
retained. The latest desired twin state must be retained (a reconnecting device gets it when it
SUBSCRIBEs) and commands want QoS 1; both need an MQTT PUBLISH. The service logs in as its own fixed
NATS user (outside the auth callout, allowed on every device's subjects and nothing else) and
`publish` returns once the server has PUBACKed, i.e. stored the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from urllib.parse import unquote, urlsplit

import structlog

from muster.runtime.device_topics import device_topic
from muster.runtime.mqtt_connection import MqttConnection, MqttRefused

log = structlog.get_logger(__name__)


class DeliveryFailed(Exception):
    """The server did not take the message (not connected, or no PUBACK in time): try again later."""


class DevicePublisher:
    def __init__(self, host: str, port: int, username: str, password: str, *, client_id: str,
                 ack_timeout: float = 5.0, reconnect_delay: float = 0.5) -> None:
        self._address = (host, port)
        self._credentials = (username, password)
        self._client_id = client_id
        self._ack_timeout = ack_timeout
        self._reconnect_delay = reconnect_delay
        self._connection: MqttConnection | None = None
        self._connected = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, *, client_id: str | None = None, ack_timeout: float = 5.0) -> DevicePublisher:
        """`mqtt://user:password@host:port`; the client id defaults to a fresh one per process."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname or not parts.port or parts.username is None:
            raise ValueError("device MQTT URL must look like mqtt://user:password@host:port")
        return cls(parts.hostname, parts.port, unquote(parts.username), unquote(parts.password or ""),
                   client_id=client_id or f"muster-platform-{uuid.uuid4().hex[:12]}", ack_timeout=ack_timeout)

    async def start(self) -> None:
        """Connect (waiting for the first connection), then keep reconnecting in the background."""
        await self._connect_once()
        self._supervisor = asyncio.create_task(self._supervise())

    async def publish(self, device_id: str, levels: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> None:
        """Publish to `muster/v1/devices/{id}/{levels}`; at QoS 1 return at its PUBACK."""
        try:
            await asyncio.wait_for(self._connected.wait(), self._ack_timeout)
        except TimeoutError as exc:
            raise DeliveryFailed("not connected to the MQTT server") from exc
        connection = self._connection
        if connection is None:
            raise DeliveryFailed("not connected to the MQTT server")
        try:
            mid = connection.publish(device_topic(device_id, levels), payload, qos=qos, retain=retain)
        except ConnectionError as exc:
            raise DeliveryFailed(str(exc)) from exc
        if qos == 0:
            return
        acked = asyncio.get_running_loop().create_future()
        self._waiting[mid] = acked
        try:
            await asyncio.wait_for(acked, self._ack_timeout)
        except TimeoutError as exc:
            raise DeliveryFailed(f"no PUBACK within {self._ack_timeout} s") from exc
        finally:
            self._waiting.pop(mid, None)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._connection is not None:
            await self._connection.disconnect()
        self._fail_waiting("publisher closed")

    def _on_ack(self, mid: int) -> None:
        waiting = self._waiting.pop(mid, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def _fail_waiting(self, reason: str) -> None:
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(DeliveryFailed(reason))
        self._waiting.clear()

    async def _connect_once(self) -> None:
        connection = MqttConnection(on_ack=self._on_ack, on_message=lambda _topic, _payload: None)
        await connection.connect(*self._address, self._client_id, *self._credentials)
        self._connection = connection
        self._connected.set()
        log.info("device_publisher_connected", client_id=self._client_id)

    async def _supervise(self) -> None:
        while True:
            connection = self._connection
            if connection is not None:
                await connection.closed.wait()
            self._connected.clear()
            self._fail_waiting("connection to the MQTT server lost")
            log.warning("device_publisher_disconnected", client_id=self._client_id)
            while True:
                await asyncio.sleep(self._reconnect_delay)
                try:
                    await self._connect_once()
                    break
                except (MqttRefused, OSError) as exc:
                    log.warning("device_publisher_reconnect_failed", error=str(exc))
