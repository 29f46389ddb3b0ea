"""Delivery decisions: when a due command is sent, re-sent with backoff, times out or expires,
depending on its device's presence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from services.commands.delivery import advance, command_levels, command_payload
from services.commands.domain import Command, CommandState, RetryPolicy, TimerKind

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RETRY = RetryPolicy(max_attempts=3, initial_backoff=2 * S, multiplier=2.0, max_backoff=3 * S)


def command(ttl: timedelta = 60 * S) -> Command:
    return Command.create(tenant_id="acme", device_id="dev1", command="reboot", parameters={"delay": 5},
                          creator="ops@acme", request_id="", request_hash="", ttl=ttl, delivery_timeout=5 * S,
                          execution_timeout=30 * S, retry=RETRY, now=T0, command_id="c" * 32)


def test_a_new_command_for_an_online_device_is_sent_now_and_waits_for_its_ack() -> None:
    step = advance(command(), online=True, now=T0)
    assert step.send and step.command.state is CommandState.SENT and step.command.attempts == 1
    assert step.due_at == T0 + 5 * S


def test_a_command_for_an_offline_device_waits_until_its_time_to_live() -> None:
    step = advance(command(), online=False, now=T0)
    assert not step.send and step.command.state is CommandState.PENDING
    assert step.due_at == T0 + 60 * S


def test_it_is_sent_when_the_device_comes_online_before_its_ttl() -> None:
    waited = advance(command(), online=False, now=T0).command
    step = advance(waited, online=True, now=T0 + 30 * S)
    assert step.send and step.command.send_time == T0 + 30 * S


def test_past_its_ttl_it_expires_even_if_the_device_is_online_now() -> None:
    waited = advance(command(), online=False, now=T0).command
    step = advance(waited, online=True, now=T0 + 60 * S)
    assert not step.send and step.command.state is CommandState.EXPIRED and step.due_at is None


def test_no_ack_resends_with_growing_backoff_then_times_out_not_acknowledged() -> None:
    now, sends, cmd = T0, [], command(ttl=3600 * S)
    step = advance(cmd, online=True, now=now)
    while step.due_at is not None:
        if step.send:
            sends.append(now)
        now = step.due_at
        step = advance(step.command, online=True, now=now)
    assert sends == [T0, T0 + 7 * S, T0 + 15 * S]  # ack timeout 5 s, then pauses of 2 s and 3 s (4 s capped)
    assert step.command.state is CommandState.TIMED_OUT
    assert "not acknowledged" in step.command.last_transition.reason


def test_a_resend_waits_while_the_device_is_offline_and_goes_out_when_it_is_back() -> None:
    sent = advance(command(), online=True, now=T0).command
    paused = advance(sent, online=False, now=T0 + 5 * S)
    assert paused.due_at == T0 + 7 * S and paused.command.state is CommandState.PENDING
    waiting = advance(paused.command, online=False, now=T0 + 7 * S)
    assert not waiting.send and waiting.due_at == T0 + 60 * S  # now only its time to live
    deadline = waiting.command.next_deadline()
    assert deadline is not None and deadline.kind is TimerKind.EXPIRE
    back = advance(waiting.command, online=True, now=T0 + 20 * S)
    assert back.send and back.command.attempts == 2


def test_a_delivered_command_without_result_times_out() -> None:
    delivered = advance(command(), online=True, now=T0).command.acknowledge(T0 + S)
    step = advance(delivered, online=True, now=T0 + 31 * S)
    assert step.command.state is CommandState.TIMED_OUT and not step.send


def test_a_timer_not_yet_due_changes_nothing() -> None:
    sent = advance(command(), online=True, now=T0).command
    assert advance(sent, online=True, now=T0 + 4 * S).command == sent


def test_the_payload_carries_id_name_params_and_expiry() -> None:
    cmd = command()
    assert orjson.loads(command_payload(cmd)) == {"id": cmd.id, "name": "reboot", "params": {"delay": 5},
                                                 "expires_at": "2026-11-23T12:01:00Z"}
    assert command_levels(cmd) == f"commands/{cmd.id}"
