"""Presence rules: how connects, disconnects, wills, traffic and silence move a device between
NEVER_SEEN, ONLINE, STALE and OFFLINE, with a reason and since-when. Pure: no I/O, no protobuf.

Events arrive late, twice and out of order (NATS's system events and the device's `status` messages
travel different paths), so every rule is ordered by session: a session is one connection (NATS server
id + connection id) and sessions compare by their start time. An event of an older session than the
current one only goes to the log; a repeated event changes nothing; a disconnect that arrives before
its connect establishes the session closed, and the late connect is then a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import IntEnum

from services.twin.connectivity import ABNORMAL, REASON_CODES, DisconnectReason, Session


class Presence(IntEnum):
    """Mirrors muster.twin.v1.Presence."""

    NEVER_SEEN = 1
    ONLINE = 2
    STALE = 3
    OFFLINE = 4


WILL_WINDOW = timedelta(seconds=10)
"""A will and a disconnect this close together are the same connection ending (the server publishes
the will as it closes the connection; both carry the server's clock)."""

CONNECTED, BIRTH, TRAFFIC, SILENT, REGISTERED = "connected", "birth", "traffic", "silent", "registered"


@dataclass(frozen=True)
class Connectivity:
    """One device's derived state (a row of `twin.connectivity`)."""

    device_id: str
    presence: Presence = Presence.NEVER_SEEN
    reason: str = REGISTERED
    since: datetime | None = None
    session: Session | None = None
    last_seen: datetime | None = None
    will_at: datetime | None = None  # the last will seen on `status`
    stale_after: timedelta | None = None  # the device's own, from its birth message

    def describe(self) -> str:
        """For people: "offline since 2026-11-23 10:42:07 UTC, keepalive timeout"."""
        if self.presence is Presence.NEVER_SEEN:
            return "never connected"
        when = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return f"{self.presence.name.lower()}{when}, {self.reason.replace('_', ' ')}"


@dataclass(frozen=True)
class PresenceChange:
    device_id: str
    presence: Presence
    previous: Presence
    reason: str
    since: datetime
    session_id: str


Outcome = tuple[Connectivity, PresenceChange | None]


def _move(state: Connectivity, presence: Presence, reason: str, since: datetime, **changes: object) -> Outcome:
    after = replace(state, presence=presence, reason=reason, since=since, **changes)  # type: ignore[arg-type]
    if presence is state.presence:
        return after, None
    session_id = after.session.session_id if after.session else ""
    return after, PresenceChange(state.device_id, presence, state.presence, reason, since, session_id)


def on_connected(state: Connectivity, session: Session) -> Outcome:
    current = state.session
    if current is not None and session.order_key <= current.order_key:
        return state, None  # a repeat, or an older connection reported late: log only
    return _move(state, Presence.ONLINE, CONNECTED, session.connected_at, session=session)


def on_disconnected(state: Connectivity, session: Session) -> Outcome:
    """`session` carries its disconnect (time, NATS's reason); the reason is refined by a will seen
    around the same time."""
    ended = session.disconnected_at
    if ended is None:
        raise ValueError("on_disconnected needs a session with its disconnect time")
    if session.reason is DisconnectReason.AUTH_REFUSED:
        return state, None  # never connected: not a presence change
    current = state.session
    if current is not None and session.order_key < current.order_key:
        return state, None  # an older connection: log only
    if current is not None and current.session_id == session.session_id and current.disconnected_at is not None:
        return state, None  # a repeat
    if session.reason is DisconnectReason.CLIENT_DISCONNECT and _near(state.will_at, ended):
        session = replace(session, reason=DisconnectReason.CONNECTION_LOST)
    return _move(state, Presence.OFFLINE, REASON_CODES[session.reason], ended, session=session)


def on_will(state: Connectivity, at: datetime) -> Outcome:
    """The broker published the device's will: its connection was lost (not closed cleanly). Either
    the disconnect is already known (refine its reason), or it is still on its way (go OFFLINE now)."""
    state = replace(state, will_at=max(at, state.will_at) if state.will_at else at)
    current = state.session
    if current is None or at < current.connected_at:
        return state, None  # a will of a connection older than the one we know
    if current.disconnected_at is None:
        return _move(state, Presence.OFFLINE, REASON_CODES[DisconnectReason.CONNECTION_LOST], at)
    if current.reason is DisconnectReason.CLIENT_DISCONNECT and _near(at, current.disconnected_at):
        lost = replace(current, reason=DisconnectReason.CONNECTION_LOST)
        return replace(state, session=lost, reason=REASON_CODES[lost.reason]), None
    return state, None


def on_traffic(state: Connectivity, at: datetime, *, birth: bool = False,
               stale_after: timedelta | None = None) -> Outcome:
    """Anything the device sent at `at`. A STALE device is ONLINE again; a birth message newer than the
    device's disconnect means it is back even if the connect event has not arrived yet."""
    changes: dict[str, object] = {"last_seen": max(at, state.last_seen) if state.last_seen else at}
    if birth:
        changes["stale_after"] = stale_after
    if state.presence is Presence.STALE and (state.last_seen is None or at > state.last_seen):
        return _move(state, Presence.ONLINE, BIRTH if birth else TRAFFIC, at, **changes)
    back = state.presence in (Presence.OFFLINE, Presence.NEVER_SEEN) and (state.since is None or at > state.since)
    if birth and back:
        return _move(state, Presence.ONLINE, BIRTH, at, **changes)
    return replace(state, **changes), None  # type: ignore[arg-type]


def on_sweep(state: Connectivity, now: datetime, default_stale_after: timedelta) -> Outcome:
    """An ONLINE device silent for longer than its interval becomes STALE (since the moment it did)."""
    if state.presence is not Presence.ONLINE:
        return state, None
    limit = state.stale_after or default_stale_after
    heard = max(t for t in (state.last_seen, state.since, state.session.connected_at if state.session else None)
                if t is not None)
    if now - heard <= limit:
        return state, None
    return _move(state, Presence.STALE, SILENT, heard + limit)


def _near(will_at: datetime | None, at: datetime) -> bool:
    return will_at is not None and abs(will_at - at) <= WILL_WINDOW


def abnormal(reason: DisconnectReason) -> bool:
    return reason in ABNORMAL
