"""One MQTT 3.1.1 connection on gmqtt (a simulated device's, or the platform's own for publishing to
devices): CONNECT with credentials and a will, QoS 1 publishes whose PUBACKs are reported per packet
id, a subscription, and a clean or abrupt end.

gmqtt's `publish` returns nothing, so PUBACKs are observed through its documented `persistent_storage`
hook: gmqtt stores every outbound QoS 1 packet there under its packet id and removes it on PUBACK.
gmqtt's own reconnect is switched off: its owner reconnects (e.g. a device: fresh clean session,
jittered back-off, counted), one connection per `MqttConnection`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.storage import PersistentStorage


class MqttRefused(Exception):
    """The server refused CONNECT (non-zero CONNACK) or closed the connection before answering."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class _AckTracker(PersistentStorage):  # type: ignore[misc]  # gmqtt ships no type hints
    """gmqtt's in-flight store, reporting each PUBACK (removal) and remembering the last packet id."""

    def __init__(self, on_ack: Callable[[int], None]) -> None:
        super().__init__()
        self._on_ack = on_ack
        self.in_flight: set[int] = set()
        self.last_mid = 0

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.in_flight.add(mid)
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        if mid in self.in_flight:
            self.in_flight.discard(mid)
            self._on_ack(mid)

    def clear(self) -> None:
        super().clear()
        self.in_flight.clear()


class _OneConnectionClient(gmqtt.Client):  # type: ignore[misc]  # gmqtt ships no type hints
    """gmqtt's client without its automatic reconnect (it would resume with clean_session=False)."""

    async def reconnect(self, delay: bool = False) -> None:
        return None


class MqttConnection:
    """One connection. `publish` returns the packet id once the PUBLISH is written; `on_ack` fires on
    its PUBACK. Incoming PUBLISHes go to `on_message(topic, payload)`. `closed` is set when it ends."""

    def __init__(self, on_ack: Callable[[int], None], on_message: Callable[[str, bytes], None]) -> None:
        self._on_message = on_message
        self._acks = _AckTracker(on_ack)
        self._client: Any = None
        self.closed = asyncio.Event()

    @property
    def in_flight(self) -> set[int]:
        """Packet ids of QoS 1 publishes still awaiting their PUBACK."""
        return self._acks.in_flight

    async def connect(self, host: str, port: int, client_id: str, username: str, password: str, *,
                      will: Will | None = None, keepalive: int = 60, connect_timeout: float = 10.0) -> None:
        will_message = None if will is None else gmqtt.Message(will.topic, will.payload, qos=will.qos,
                                                               retain=will.retain)
        client = _OneConnectionClient(client_id, clean_session=True, will_message=will_message,
                                      persistent_storage=self._acks)
        client.set_auth_credentials(username, password)
        client.on_message = self._received
        client.on_disconnect = lambda *_: self.closed.set()
        try:
            await asyncio.wait_for(client.connect(host, port, keepalive=keepalive, version=MQTTv311),
                                   connect_timeout)
        except gmqtt.MQTTConnectError as exc:
            await self._abandon(client)
            raise MqttRefused(f"CONNACK refused: {exc}") from exc
        except TimeoutError as exc:
            await self._abandon(client)
            raise MqttRefused("no CONNACK") from exc
        if self.closed.is_set():  # closed right after CONNACK
            raise MqttRefused("closed after CONNACK")
        self._client = client

    @staticmethod
    async def _abandon(client: Any) -> None:
        with contextlib.suppress(Exception):
            await client.disconnect()

    def _received(self, _client: Any, topic: str, payload: bytes, _qos: int, _properties: Any) -> int:
        self._on_message(topic, payload)
        return 0  # PUBACK reason: success

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Publish; at QoS 1 the packet id is in `in_flight` until its PUBACK (at QoS 0 it means nothing)."""
        if self._client is None or self.closed.is_set():
            raise ConnectionError("not connected")
        self._client.publish(topic, payload, qos=qos, retain=retain)
        return self._acks.last_mid

    def subscribe(self, topic: str) -> None:
        if self._client is None:
            raise ConnectionError("not connected")
        self._client.subscribe(topic, qos=1)

    async def disconnect(self) -> None:
        """DISCONNECT if still connected (the broker then drops the will); after a lost connection
        (the broker has published the will) just release it."""
        client, self._client = self._client, None
        if client is not None and not self.closed.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)
        self.closed.set()
