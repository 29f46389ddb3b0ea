"""Connections of devices as NATS reports them: sessions, disconnect reasons, and reading NATS's
`io.nats.server.advisory.v1.client_connect` / `client_disconnect` system events. Pure: no I/O.

What NATS 2.15 says about an MQTT device (found by experiment, see docs/device-contract.md):
`client.user` is the device id (the auth callout's user JWT `name`), `client.client_id` the MQTT client
id, `client.id` the connection id, `client.start`/`stop` the times, `reason` why it ended. A clean MQTT
DISCONNECT and a socket closed without one (process killed) both say "Client Closed"; the difference is
the will, which the broker publishes on `status` only in the second case. A reset connection or an
expired keep-alive says "Read Error"; a refused connect is a DISCONNECT in account `$G` with
"Authentication Failure"; a kick says "Kicked".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any


class DisconnectReason(IntEnum):
    """Mirrors muster.twin.v1.DisconnectReason."""

    UNSPECIFIED = 0
    CLIENT_DISCONNECT = 1
    CONNECTION_LOST = 2
    KEEPALIVE_TIMEOUT = 3
    AUTH_REFUSED = 4
    KICKED = 5
    SERVER_SHUTDOWN = 6
    SESSION_TAKEN_OVER = 7
    CREDENTIALS_EXPIRED = 8
    PROTOCOL_ERROR = 9
    NOT_CONNECTED = 10
    OTHER = 11


REASON_CODES: Mapping[DisconnectReason, str] = {reason: reason.name.lower() for reason in DisconnectReason}
ABNORMAL = frozenset(DisconnectReason) - {DisconnectReason.CLIENT_DISCONNECT, DisconnectReason.AUTH_REFUSED,
                                          DisconnectReason.UNSPECIFIED}
"""Disconnects worth counting as trouble (the fleet index's "abnormal disconnects")."""

NATS_REASONS: Mapping[str, DisconnectReason] = {
    "Client Closed": DisconnectReason.CLIENT_DISCONNECT,  # CONNECTION_LOST when a will goes with it
    "Read Error": DisconnectReason.KEEPALIVE_TIMEOUT,  # the keep-alive deadline, or a reset socket
    "Stale Connection": DisconnectReason.KEEPALIVE_TIMEOUT,
    "Write Error": DisconnectReason.CONNECTION_LOST,
    "Slow Consumer (Write Deadline)": DisconnectReason.CONNECTION_LOST,
    "Slow Consumer (Pending Bytes)": DisconnectReason.CONNECTION_LOST,
    "Authentication Failure": DisconnectReason.AUTH_REFUSED,
    "Authentication Timeout": DisconnectReason.AUTH_REFUSED,
    "Authentication Revoked": DisconnectReason.KICKED,
    "Kicked": DisconnectReason.KICKED,
    "Server Shutdown": DisconnectReason.SERVER_SHUTDOWN,
    "Duplicate Client ID": DisconnectReason.SESSION_TAKEN_OVER,
    "Authentication Expired": DisconnectReason.CREDENTIALS_EXPIRED,
    "Protocol Violation": DisconnectReason.PROTOCOL_ERROR,
    "Parse Error": DisconnectReason.PROTOCOL_ERROR,
    "Maximum Payload Exceeded": DisconnectReason.PROTOCOL_ERROR,
    "Maximum Control Line Exceeded": DisconnectReason.PROTOCOL_ERROR,
}

DEVICE_ACCOUNTS = frozenset({"MUSTER", "$G"})  # devices land in MUSTER; a refused connect stays in $G


def classify(nats_reason: str) -> DisconnectReason:
    return NATS_REASONS.get(nats_reason, DisconnectReason.OTHER)


@dataclass(frozen=True)
class Session:
    """One connection of a device; `disconnected_at` is None while it is open."""

    session_id: str
    client_id: str
    remote_address: str
    protocol: str
    connected_at: datetime
    disconnected_at: datetime | None = None
    reason: DisconnectReason = DisconnectReason.UNSPECIFIED
    detail: str = ""  # NATS's own words for the disconnect

    @property
    def order_key(self) -> tuple[datetime, str]:
        """Sessions of a device in the order they started."""
        return self.connected_at, self.session_id


class Kind(IntEnum):
    """Mirrors muster.twin.v1.ConnectionEventKind."""

    CONNECTED = 1
    DISCONNECTED = 2


@dataclass(frozen=True)
class ConnectionEvent:
    """One of NATS's connect/disconnect events about a device: its log entry, and its session."""

    event_id: str
    device_id: str
    kind: Kind
    time: datetime
    session: Session


class NotADeviceEvent(ValueError):
    """A system event about something other than an MQTT device (a platform service, a bad payload)."""


def parse_system_event(document: Mapping[str, Any]) -> ConnectionEvent:
    """A `client_connect`/`client_disconnect` advisory -> the device's connection event."""
    kind = {"io.nats.server.advisory.v1.client_connect": Kind.CONNECTED,
            "io.nats.server.advisory.v1.client_disconnect": Kind.DISCONNECTED}.get(str(document.get("type")))
    client, server = document.get("client"), document.get("server")
    if kind is None or not isinstance(client, dict) or not isinstance(server, dict):
        raise NotADeviceEvent("not a client connect/disconnect advisory")
    if client.get("client_type") != "mqtt" or client.get("acc") not in DEVICE_ACCOUNTS or not client.get("user"):
        raise NotADeviceEvent("not an MQTT device's connection")
    try:
        started = parse_time(client["start"])
        session = Session(
            session_id=f"{server['id']}/{int(client['id'])}", client_id=str(client.get("client_id") or ""),
            remote_address=f"{client.get('host', '')}:{client['port']}" if client.get("port") else str(
                client.get("host", "")),
            protocol="mqtt", connected_at=started)
        if kind is Kind.DISCONNECTED:
            stopped = parse_time(client.get("stop") or document["timestamp"])
            detail = str(document.get("reason") or "")
            session = Session(session.session_id, session.client_id, session.remote_address, session.protocol,
                              started, stopped, classify(detail), detail)
            return ConnectionEvent(str(document["id"]), str(client["user"]), kind, stopped, session)
        return ConnectionEvent(str(document["id"]), str(client["user"]), kind, started, session)
    except (KeyError, TypeError, ValueError) as exc:
        raise NotADeviceEvent(f"unreadable advisory: {exc!r}") from exc


def parse_time(text: str) -> datetime:
    """RFC 3339 with nanoseconds (Go's format) -> datetime (microseconds)."""
    head, _, rest = text.partition(".")
    if not rest:
        return datetime.fromisoformat(text)
    digits = rest[:len(rest) - len(rest.lstrip("0123456789"))]
    zone = rest[len(digits):]
    return datetime.fromisoformat(f"{head}.{digits[:6].ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}")
