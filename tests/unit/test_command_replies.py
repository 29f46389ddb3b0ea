"""Parsing device replies (commands/{id}/ack and /result) into replies or device errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from muster.runtime.device_inbox import DeviceError, DeviceMessage
from services.commands.replies import (
    INVALID_RESULT,
    NOT_JSON,
    NOT_OBJECT,
    PAYLOAD_TOO_LARGE,
    UNKNOWN_COMMAND,
    Outcome,
    Reply,
    ReplyKind,
    parse_reply,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def message(command: str, kind: str, data: bytes) -> DeviceMessage:
    return DeviceMessage("dev1", f"muster/v1/devices/dev1/commands/{command}/{kind}", data, 7, NOW)


def reply(command: str, kind: str, data: bytes) -> Reply:
    parsed = parse_reply(message(command, kind, data))
    assert isinstance(parsed, Reply), parsed
    return parsed


def refusal(command: str, kind: str, data: bytes) -> DeviceError:
    parsed = parse_reply(message(command, kind, data))
    assert isinstance(parsed, DeviceError), parsed
    assert parsed.device_id == "dev1"
    assert parsed.topic == f"muster/v1/devices/dev1/commands/{command}/{kind}"
    return parsed


@pytest.mark.parametrize("data", [b"{}", b"", b"  ", b'{"anything": 1}'])
def test_an_ack_is_any_object_or_nothing(data: bytes) -> None:
    parsed = reply("cmd-1", "ack", data)
    assert (parsed.device_id, parsed.command_id, parsed.kind, parsed.received) == ("dev1", "cmd-1", ReplyKind.ACK, NOW)


def test_a_successful_result_carries_its_output() -> None:
    parsed = reply("cmd-1", "result", b'{"status": "succeeded", "output": {"rebooted": true}}')
    assert (parsed.kind, parsed.outcome, parsed.output, parsed.error) == (
        ReplyKind.RESULT, Outcome.SUCCEEDED, {"rebooted": True}, "")


def test_a_failed_result_carries_its_error_and_status_is_case_insensitive() -> None:
    parsed = reply("cmd-1", "result", b'{"status": "FAILED", "error": "disk full", "output": null}')
    assert (parsed.outcome, parsed.output, parsed.error) == (Outcome.FAILED, {}, "disk full")


@pytest.mark.parametrize("data", [
    b'{}', b'{"status": "done"}', b'{"status": 1}', b'{"status": "succeeded", "output": [1]}',
    b'{"status": "failed", "error": {"x": 1}}',
])
def test_a_result_without_a_valid_status_output_or_error_is_invalid(data: bytes) -> None:
    assert refusal("cmd-1", "result", data).code == INVALID_RESULT


def test_not_json_and_not_an_object_are_refused() -> None:
    assert refusal("cmd-1", "result", b"{not json").code == NOT_JSON
    assert refusal("cmd-1", "ack", b"\xff\xfe").code == NOT_JSON
    assert refusal("cmd-1", "ack", b"[1, 2]").code == NOT_OBJECT


def test_an_oversized_reply_is_refused() -> None:
    big = b'{"status": "succeeded", "output": {"x": "' + b"a" * 70_000 + b'"}}'
    assert refusal("cmd-1", "result", big).code == PAYLOAD_TOO_LARGE


def test_a_malformed_command_id_is_an_unknown_command() -> None:
    assert refusal("-bad", "ack", b"{}").code == UNKNOWN_COMMAND
