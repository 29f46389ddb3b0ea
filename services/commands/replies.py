"""Reading device replies: `commands/{command_id}/ack` and `commands/{command_id}/result` messages
into `Reply` values, or into the `DeviceError` the device hears on its `errors` topic.

Parsing is pure (no I/O): whether the command exists and is the device's is the reply handler's
question. Codes are stable, part of the device contract (docs/device-contract.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from muster.runtime.device_inbox import DeviceError, DeviceMessage
from services.commands.streams import ACK, RESULT

MAX_REPLY_BYTES = 64 * 1024
MAX_ERROR_CHARS = 4096
_COMMAND_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")

NOT_JSON = "NOT_JSON"
NOT_OBJECT = "NOT_OBJECT"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
INVALID_RESULT = "INVALID_RESULT"
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"


class ReplyKind(StrEnum):
    ACK = ACK
    RESULT = RESULT


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Reply:
    """One well-formed device reply, not yet checked against the command it names."""

    device_id: str
    command_id: str
    kind: ReplyKind
    topic: str
    received: datetime
    outcome: Outcome | None = None  # results only
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def parse_reply(message: DeviceMessage) -> Reply | DeviceError:
    """A reply, or the error to answer the device with (never an exception)."""

    def refuse(code: str, text: str) -> DeviceError:
        return DeviceError(message.device_id, message.topic, code, text)

    levels = message.levels
    if len(levels) != 3 or levels[0] != "commands" or levels[2] not in (ACK, RESULT):
        return refuse(NOT_OBJECT, f"not a command reply topic: {message.topic}")  # the stream's filter rules it out
    command_id, kind = levels[1], ReplyKind(levels[2])
    if not _COMMAND_ID.match(command_id):
        return refuse(UNKNOWN_COMMAND, f"{command_id!r} is not a command id")
    if len(message.data) > MAX_REPLY_BYTES:
        return refuse(PAYLOAD_TOO_LARGE, f"a reply is at most {MAX_REPLY_BYTES} bytes, this one {len(message.data)}")
    body: Any = {}
    if message.data.strip():  # an empty ack is an ack
        try:
            body = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            return refuse(NOT_JSON, "the reply is not UTF-8 JSON")
    if not isinstance(body, dict):
        return refuse(NOT_OBJECT, "the reply must be a JSON object")
    reply = Reply(message.device_id, command_id, kind, message.topic, message.received)
    if kind is ReplyKind.ACK:
        return reply
    return _result(reply, body, refuse)


def _result(reply: Reply, body: dict[str, Any], refuse: Callable[[str, str], DeviceError]) -> Reply | DeviceError:
    status = body.get("status")
    if not isinstance(status, str) or status.lower() not in (Outcome.SUCCEEDED, Outcome.FAILED):
        return refuse(INVALID_RESULT, f'"status" must be "succeeded" or "failed", not {status!r}')
    output = body.get("output", {})
    if output is None:
        output = {}
    if not isinstance(output, dict):
        return refuse(INVALID_RESULT, '"output" must be a JSON object')
    error = body.get("error", "")
    if error is None:
        error = ""
    if not isinstance(error, str):
        return refuse(INVALID_RESULT, '"error" must be a string')
    return Reply(reply.device_id, reply.command_id, reply.kind, reply.topic, reply.received,
                 outcome=Outcome(status.lower()), output=output, error=error[:MAX_ERROR_CHARS])
