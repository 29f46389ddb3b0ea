"""A raw MQTT 3.1.1 CONNECT for the connection-storm benchmark (bench/edge_connect.py): 10,000 bare
sockets that only CONNECT and wait for CONNACK measure the server, not a client library's per-connection
overhead. Simulated devices (muster/simulator) use gmqtt."""

from __future__ import annotations

import struct

CONNECT = 0x10


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def connect_packet(client_id: str, username: str, password: str, *, keepalive: int = 300) -> bytes:
    """CONNECT with clean session, username and password (no will)."""
    body = (_text("MQTT") + bytes([4, 0b11000010]) + struct.pack("!H", keepalive)
            + _text(client_id) + _text(username) + _text(password))
    return bytes([CONNECT]) + _remaining_length(len(body)) + body
