"""A minimal asyncio MQTT 3.1.1 client: just what a simulated device needs (CONNECT with a will, QoS 1
PUBLISH with PUBACK tracking, SUBSCRIBE, keepalive), cheap enough for thousands of connections in one
process. (aiomqtt/paho cost several times more CPU per message; the load generator must not be the
bottleneck it measures.)"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    0x10, 0x20, 0x30, 0x40, 0x82, 0x90, 0xC0, 0xD0, 0xE0)


class MqttRefused(Exception):
    """The server answered CONNECT with a non-zero return code (or closed the connection)."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def _text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, *, keepalive: int = 300,
                   will: Will | None = None) -> bytes:
    """CONNECT with clean session, username and password, and optionally a will."""
    flags = 0b11000010
    payload = _text(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _text(will.topic) + _text(will.payload)
    payload += _text(username) + _text(password)
    return packet(CONNECT, _text("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload)


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH."""
    return packet(PUBLISH | 0x02, _text(topic) + struct.pack("!H", packet_id) + payload)


def subscribe_packet(topic: str, packet_id: int, qos: int = 1) -> bytes:
    return packet(SUBSCRIBE, struct.pack("!H", packet_id) + _text(topic) + bytes([qos]))


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(first byte, body) of the next packet."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length) if length else b""


class MqttClient:
    """One connection. `publish` returns once the PUBLISH is written; `on_ack` fires on its PUBACK.
    Incoming PUBLISHes go to `on_message(topic, payload)`. `closed` is set when the connection ends."""

    def __init__(self, on_ack: Callable[[int], None], on_message: Callable[[str, bytes], None]) -> None:
        self._on_ack, self._on_message = on_ack, on_message
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._next_id = 0
        self.in_flight: set[int] = set()
        self.closed = asyncio.Event()

    async def connect(self, host: str, port: int, client_id: str, username: str, password: str, *,
                      will: Will | None = None, keepalive: int = 60, connect_timeout: float = 10.0) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout)
        try:
            writer.write(connect_packet(client_id, username, password, keepalive=keepalive, will=will))
            first, body = await asyncio.wait_for(read_packet(reader), connect_timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            writer.close()
            raise MqttRefused(f"no CONNACK: {exc!r}") from exc
        if first != CONNACK or len(body) != 2 or body[1] != 0:
            writer.close()
            raise MqttRefused(f"CONNACK return code {body[1] if len(body) == 2 else '?'}")
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader))
        self._pinger = asyncio.create_task(self._ping(keepalive))

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def publish(self, topic: str, payload: bytes) -> int:
        """QoS 1 publish; the packet id is in `in_flight` until its PUBACK."""
        if self._writer is None or self.closed.is_set():
            raise ConnectionError("not connected")
        packet_id = self._packet_id()
        self.in_flight.add(packet_id)
        self._writer.write(publish_packet(topic, payload, packet_id))
        return packet_id

    def subscribe(self, topic: str) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(subscribe_packet(topic, self._packet_id()))

    async def drain(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                first, body = await read_packet(reader)
                kind = first & 0xF0
                if kind == PUBACK:
                    packet_id = struct.unpack("!H", body[:2])[0]
                    if packet_id in self.in_flight:
                        self.in_flight.discard(packet_id)
                        self._on_ack(packet_id)
                elif kind == PUBLISH:
                    self._received(first, body)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()

    def _received(self, first: int, body: bytes) -> None:
        (topic_length,) = struct.unpack("!H", body[:2])
        topic = body[2:2 + topic_length].decode(errors="replace")
        rest = body[2 + topic_length:]
        if (first >> 1) & 0x03:  # QoS 1 (2 is answered like 1: we never subscribe at QoS 2)
            if self._writer is not None:
                self._writer.write(packet(PUBACK, rest[:2]))
            rest = rest[2:]
        self._on_message(topic, rest)

    async def _ping(self, keepalive: int) -> None:
        while not self.closed.is_set() and self._writer is not None:
            await asyncio.sleep(keepalive / 2)
            with contextlib.suppress(OSError):
                self._writer.write(packet(PINGREQ, b""))

    async def disconnect(self, *, graceful: bool = True) -> None:
        """graceful: DISCONNECT (the broker drops the will); otherwise an abort, like a network cut."""
        writer, self._writer = self._writer, None
        if writer is not None:
            if graceful:
                with contextlib.suppress(OSError):
                    writer.write(packet(DISCONNECT, b""))
                    await asyncio.wait_for(writer.drain(), 2.0)
                writer.close()
            else:
                writer.transport.abort()
        for task in (self._reader_task, self._pinger):
            if task is not None:
                task.cancel()
        self.closed.set()
