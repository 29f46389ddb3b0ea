"""Domain command <-> protobuf, in one place (the servicer, the events and the tests use it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from muster.commands.v1 import resources_pb2 as pb
from muster.runtime.timestamps import timestamp_of
from services.commands.domain import Command, CommandState, Transition


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def _time(value: datetime | None) -> Timestamp | None:
    return timestamp_of(value) if value is not None else None


def etag_of(version: int) -> str:
    return f'"{version}"'


def state_to_proto(state: CommandState | None) -> pb.CommandState.ValueType:
    return pb.CommandState.ValueType(int(state) if state is not None else 0)


def transition_to_proto(t: Transition) -> pb.CommandTransition:
    return pb.CommandTransition(time=timestamp_of(t.time), from_state=state_to_proto(t.from_state),
                                to_state=state_to_proto(t.to_state), reason=t.reason, changed=t.changed)


def command_to_proto(command: Command) -> pb.Command:
    parameters = Struct()
    parameters.update(dict(command.parameters))
    message = pb.Command(
        name=command.name, command=command.command, parameters=parameters, creator=command.creator,
        request_id=command.request_id, ttl=_duration(command.ttl),
        delivery_timeout=_duration(command.delivery_timeout),
        execution_timeout=_duration(command.execution_timeout),
        retry_policy=pb.RetryPolicy(max_attempts=command.retry.max_attempts,
                                    initial_backoff=_duration(command.retry.initial_backoff),
                                    multiplier=command.retry.multiplier,
                                    max_backoff=_duration(command.retry.max_backoff)),
        state=state_to_proto(command.state), create_time=timestamp_of(command.create_time),
        send_time=_time(command.send_time), deliver_time=_time(command.deliver_time),
        finish_time=_time(command.finish_time), expire_time=timestamp_of(command.expire_time),
        attempts=command.attempts, error=command.error,
        history=[transition_to_proto(t) for t in command.history],
        update_time=_time(command.update_time), etag=etag_of(command.version))
    if command.output is not None:
        message.output.update(dict(command.output))
    return message
