"""Presence rules (table-driven): connects, disconnects, wills, traffic and silence, ordered and
de-duplicated by session whatever order the events arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.twin.connectivity import DisconnectReason, Session, classify
from services.twin.presence import (
    Connectivity,
    Presence,
    on_connected,
    on_disconnected,
    on_sweep,
    on_traffic,
    on_will,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def session(sid: str, start: float, stop: float | None = None, nats_reason: str = "Client Closed") -> Session:
    return Session(sid, f"client-{sid}", "127.0.0.1:1", "mqtt", at(start),
                   at(stop) if stop is not None else None,
                   classify(nats_reason) if stop is not None else DisconnectReason.UNSPECIFIED, nats_reason)


def test_a_connect_makes_a_never_seen_device_online_with_an_event() -> None:
    state, change = on_connected(Connectivity("d1"), session("s1", 0))
    assert state.presence is Presence.ONLINE and state.reason == "connected" and state.since == at(0)
    assert change is not None and change.previous is Presence.NEVER_SEEN and change.session_id == "s1"


def test_a_repeated_connect_changes_nothing() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    again, change = on_connected(state, session("s1", 0))
    assert again == state and change is None


@pytest.mark.parametrize(("nats_reason", "reason"), [
    ("Client Closed", "client_disconnect"), ("Read Error", "keepalive_timeout"), ("Kicked", "kicked"),
    ("Server Shutdown", "server_shutdown"), ("Duplicate Client ID", "session_taken_over"),
    ("Authentication Expired", "credentials_expired"), ("Something New", "other")])
def test_a_disconnect_makes_the_device_offline_with_the_mapped_reason(nats_reason: str, reason: str) -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    state, change = on_disconnected(state, session("s1", 0, 5, nats_reason))
    assert state.presence is Presence.OFFLINE and state.reason == reason and state.since == at(5)
    assert change is not None and change.previous is Presence.ONLINE
    assert "offline since 2026-11-23 10:00:05 UTC" in state.describe()


def test_a_refused_connect_is_no_presence_change() -> None:
    state, change = on_disconnected(Connectivity("d1"), session("s1", 0, 0.1, "Authentication Failure"))
    assert state.presence is Presence.NEVER_SEEN and change is None


def test_a_late_disconnect_of_an_older_session_does_not_take_the_device_offline() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    state, _ = on_connected(state, session("s2", 10))
    after, change = on_disconnected(state, session("s1", 0, 11))
    assert after.presence is Presence.ONLINE and after.session and after.session.session_id == "s2"
    assert change is None


def test_a_disconnect_before_its_connect_leaves_the_device_offline() -> None:
    state, _ = on_disconnected(Connectivity("d1"), session("s1", 0, 2))
    state, change = on_connected(state, session("s1", 0))
    assert state.presence is Presence.OFFLINE and change is None


def test_a_close_with_a_will_is_a_lost_connection_whichever_arrives_first() -> None:
    online, _ = on_connected(Connectivity("d1"), session("s1", 0))
    will_first, _ = on_will(online, at(5))
    assert will_first.presence is Presence.OFFLINE and will_first.reason == "connection_lost"
    will_first, change = on_disconnected(will_first, session("s1", 0, 5))
    assert will_first.reason == "connection_lost" and change is None
    close_first, _ = on_disconnected(online, session("s1", 0, 5))
    assert close_first.reason == "client_disconnect"
    close_first, _ = on_will(close_first, at(5.2))
    assert close_first.reason == "connection_lost"
    assert close_first.session and close_first.session.reason is DisconnectReason.CONNECTION_LOST


def test_a_will_does_not_turn_a_kick_into_a_lost_connection() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    state, _ = on_disconnected(state, session("s1", 0, 5, "Kicked"))
    state, _ = on_will(state, at(5))
    assert state.reason == "kicked"


def test_a_will_of_an_older_connection_changes_nothing() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s2", 10))
    after, change = on_will(state, at(5))
    assert after.presence is Presence.ONLINE and change is None


def test_silence_past_the_interval_makes_an_online_device_stale_and_traffic_brings_it_back() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    state, _ = on_traffic(state, at(10))
    same, change = on_sweep(state, at(60), timedelta(seconds=60))
    assert same.presence is Presence.ONLINE and change is None
    stale, change = on_sweep(state, at(71), timedelta(seconds=60))
    assert stale.presence is Presence.STALE and stale.since == at(70) and change is not None
    back, change = on_traffic(stale, at(72))
    assert back.presence is Presence.ONLINE and back.reason == "traffic" and change is not None


def test_a_birth_announcing_its_interval_sets_when_the_device_goes_stale() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    state, _ = on_traffic(state, at(1), birth=True, stale_after=timedelta(seconds=4))
    stale, change = on_sweep(state, at(6), timedelta(seconds=300))
    assert stale.presence is Presence.STALE and change is not None


def test_a_birth_after_the_disconnect_brings_the_device_back_before_its_connect_event() -> None:
    state, _ = on_connected(Connectivity("d1"), session("s1", 0))
    state, _ = on_disconnected(state, session("s1", 0, 5))
    old_birth, change = on_traffic(state, at(4), birth=True)
    assert old_birth.presence is Presence.OFFLINE and change is None
    back, change = on_traffic(state, at(6), birth=True)
    assert back.presence is Presence.ONLINE and back.reason == "birth" and change is not None
    back, change = on_connected(back, session("s2", 5.9))
    assert back.presence is Presence.ONLINE and back.session and back.session.session_id == "s2" and change is None
