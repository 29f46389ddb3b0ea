"""Heartbeat parsing (bad input refused with a stable code) and the health status thresholds."""

from __future__ import annotations

import pytest

from services.twin.connectivity import Kind, NotADeviceEvent, parse_system_event
from services.twin.health import DEFAULT_THRESHOLDS, HealthStatus, Refusal, assess, parse_heartbeat, thresholds_from
from services.twin.status_inbox import parse_status


def test_a_heartbeat_keeps_the_known_fields_and_ignores_others() -> None:
    assert parse_heartbeat(b'{"battery": 81, "rssi": -67.5, "fw": "1.2", "uptime": null}') == {
        "battery": 81.0, "rssi": -67.5}


@pytest.mark.parametrize(("payload", "code"), [
    (b"not json", "NOT_JSON"), (b"[1]", "NOT_OBJECT"), (b'{"battery": "full"}', "INVALID_VALUE"),
    (b'{"cpu": true}', "INVALID_VALUE"), (b'{"battery": 120}', "OUT_OF_RANGE"), (b'{"uptime": -1}', "OUT_OF_RANGE"),
    (b'{"x": "' + b"a" * 5000 + b'"}', "PAYLOAD_TOO_LARGE")])
def test_a_malformed_heartbeat_is_refused_with_its_code(payload: bytes, code: str) -> None:
    refused = parse_heartbeat(payload)
    assert isinstance(refused, Refusal) and refused.code == code


@pytest.mark.parametrize(("values", "status"), [
    (None, HealthStatus.UNKNOWN), ({}, HealthStatus.OK), ({"battery": 50, "cpu": 10}, HealthStatus.OK),
    ({"battery": 15}, HealthStatus.DEGRADED), ({"battery": 5}, HealthStatus.CRITICAL),
    ({"rssi": -90, "temperature": 90}, HealthStatus.CRITICAL), ({"disk": 90}, HealthStatus.DEGRADED),
    ({"uptime": 1e9}, HealthStatus.OK)])
def test_the_status_is_the_worst_level_over_the_thresholds(values: dict[str, float] | None,
                                                            status: HealthStatus) -> None:
    assert assess(values, DEFAULT_THRESHOLDS).status is status


def test_findings_say_which_value_crossed_which_limit() -> None:
    assert assess({"battery": 8}, DEFAULT_THRESHOLDS).findings == ("battery 8 below 10 (critical)",)


def test_thresholds_are_configurable_and_unknown_fields_refused() -> None:
    thresholds = thresholds_from({"battery": {"warning": 60}})
    assert assess({"battery": 55}, thresholds).status is HealthStatus.DEGRADED
    with pytest.raises(ValueError, match="unknown field"):
        thresholds_from({"voltage": {"warning": 3}})


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"online": true}', (True, None)), (b'{"online": false}', (False, None))])
def test_status_birth_and_will(payload: bytes, expected: tuple[bool, None]) -> None:
    assert parse_status(payload) == expected


@pytest.mark.parametrize("payload", [b"x", b"[]", b'{"online": "yes"}', b'{"online": true, "heartbeat_interval": 0}'])
def test_a_malformed_status_is_refused(payload: bytes) -> None:
    assert isinstance(parse_status(payload), Refusal)


ADVISORY = {
    "type": "io.nats.server.advisory.v1.client_disconnect", "id": "abc", "timestamp": "2026-11-23T15:58:16.9Z",
    "server": {"id": "NSERVER"}, "reason": "Read Error",
    "client": {"start": "2026-11-23T15:58:16.610882883Z", "stop": "2026-11-23T15:58:16.92161109Z", "host": "10.0.0.7",
               "id": 55, "acc": "MUSTER", "user": "dev-1", "client_type": "mqtt", "client_id": "rst"}}


def test_an_mqtt_devices_disconnect_advisory_is_read_as_its_session() -> None:
    event = parse_system_event(ADVISORY)
    assert event.kind is Kind.DISCONNECTED and event.device_id == "dev-1"
    assert event.session.session_id == "NSERVER/55" and event.session.client_id == "rst"
    assert event.session.reason.name == "KEEPALIVE_TIMEOUT" and event.session.detail == "Read Error"
    assert event.time.microsecond == 921611


def test_a_platform_services_connection_is_not_a_device_event() -> None:
    with pytest.raises(NotADeviceEvent):
        parse_system_event({**ADVISORY, "client": {**ADVISORY["client"], "client_type": "nats"}})  # type: ignore[dict-item]
