"""The command state machine, table-driven: every transition from every state, the timers and their
deadlines, retries with backoff, and device replies that arrive late or twice (recorded, no change)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from muster.runtime.errors import FailedPrecondition
from services.commands.domain import (
    MAX_HISTORY,
    TERMINAL_STATES,
    Command,
    CommandState,
    Deadline,
    ResultStatus,
    RetryPolicy,
    TimerKind,
    Transition,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL, ACK, EXEC = timedelta(minutes=10), timedelta(seconds=10), timedelta(seconds=60)
RETRY = RetryPolicy(max_attempts=3, initial_backoff=timedelta(seconds=1), multiplier=2.0,
                    max_backoff=timedelta(seconds=3))
S = CommandState


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new() -> Command:
    return Command.create(tenant_id="acme", device_id="dev1", command="reboot", parameters={"delay": 1.0},
                          creator="ops@acme", request_id="", request_hash="h", ttl=TTL, delivery_timeout=ACK,
                          execution_timeout=EXEC, retry=RETRY, now=T0)


def in_state(state: CommandState) -> Command:
    """A command brought to `state` by the operations the platform and the device perform."""
    c = new()
    if state is S.PENDING:
        return c
    if state is S.EXPIRED:
        return c.fire_timer(at(TTL.total_seconds()))
    if state is S.CANCELED:
        return c.cancel("ops@acme", "wrong device", at(1))
    c = c.mark_sent(at(1))
    if state is S.SENT:
        return c
    if state is S.TIMED_OUT:
        return c.acknowledge(at(2)).fire_timer(at(2 + EXEC.total_seconds()))
    c = c.acknowledge(at(2))
    if state is S.DELIVERED:
        return c
    status = ResultStatus.SUCCEEDED if state is S.SUCCEEDED else ResultStatus.FAILED
    return c.complete(status, {"ok": True}, "" if status is ResultStatus.SUCCEEDED else "disk full", at(3))


def test_in_state_reaches_every_state() -> None:
    assert {s: in_state(s).state for s in S} == {s: s for s in S}


NOW = at(5)
Op = Callable[[Command], Command]
ACKNOWLEDGE: Op = lambda c: c.acknowledge(NOW)  # noqa: E731
SUCCEED: Op = lambda c: c.complete(ResultStatus.SUCCEEDED, {"uptime": 5.0}, "", NOW)  # noqa: E731
FAIL: Op = lambda c: c.complete(ResultStatus.FAILED, None, "disk full", NOW)  # noqa: E731
CANCEL: Op = lambda c: c.cancel("ops@acme", "no longer needed", NOW)  # noqa: E731
SEND: Op = lambda c: c.mark_sent(NOW)  # noqa: E731

# (from, operation, to, words in the reason, changed)
TRANSITIONS = [
    (S.PENDING, SEND, S.SENT, "sent to the device (attempt 1 of 3)", True),
    (S.PENDING, CANCEL, S.CANCELED, "canceled by ops@acme: no longer needed", True),
    (S.PENDING, ACKNOWLEDGE, S.PENDING, "acknowledgement ignored: the command was never sent", False),
    (S.PENDING, SUCCEED, S.PENDING, "result (succeeded) ignored: the command was never sent", False),
    (S.SENT, ACKNOWLEDGE, S.DELIVERED, "acknowledged by the device", True),
    (S.SENT, SUCCEED, S.SUCCEEDED, "no acknowledgement before the result", True),
    (S.SENT, FAIL, S.FAILED, "failed: disk full (no acknowledgement before the result)", True),
    (S.SENT, CANCEL, S.CANCELED, "canceled by ops@acme", True),
    (S.DELIVERED, SUCCEED, S.SUCCEEDED, "the device reported it succeeded", True),
    (S.DELIVERED, FAIL, S.FAILED, "the device reported it failed: disk full", True),
    (S.DELIVERED, CANCEL, S.CANCELED, "canceled by ops@acme", True),
    (S.DELIVERED, ACKNOWLEDGE, S.DELIVERED, "duplicate acknowledgement ignored", False),
    *[(s, ACKNOWLEDGE, s, f"late acknowledgement ignored: the command already finished as {s.name}", False)
      for s in (S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.EXPIRED, S.CANCELED)],
    *[(s, SUCCEED, s, f"late result (succeeded) ignored: the command already finished as {s.name}", False)
      for s in (S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.EXPIRED, S.CANCELED)],
    *[(s, FAIL, s, "late result (failed) ignored", False)
      for s in (S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.EXPIRED, S.CANCELED)],
]


@pytest.mark.parametrize(("start", "operation", "end", "reason", "changed"), TRANSITIONS,
                         ids=[f"{t[0].name}-{i}" for i, t in enumerate(TRANSITIONS)])
def test_transition(start: CommandState, operation: Op, end: CommandState, reason: str, changed: bool) -> None:
    before = in_state(start)
    after = operation(before)
    assert after.state is end
    entry = after.last_transition
    assert (entry.from_state, entry.to_state, entry.changed, entry.time) == (start, end, changed, NOW)
    assert reason in entry.reason
    assert len(after.history) == len(before.history) + 1
    if not changed:  # recorded, nothing else moves
        assert after.output == before.output and after.error == before.error
        assert after.finish_time == before.finish_time and after.next_deadline() == before.next_deadline()


@pytest.mark.parametrize("state", [s for s in S if s is not S.PENDING])
def test_only_a_pending_command_is_sent(state: CommandState) -> None:
    with pytest.raises(FailedPrecondition):
        in_state(state).mark_sent(NOW)


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.EXPIRED, S.CANCELED])
def test_a_finished_command_cannot_be_canceled_and_has_no_timer(state: CommandState) -> None:
    finished = in_state(state)
    assert finished.terminal and finished.next_deadline() is None and finished.finish_time is not None
    with pytest.raises(FailedPrecondition) as caught:
        finished.cancel("ops", "", NOW)
    assert caught.value.reason == "COMMAND_FINISHED"
    assert finished.fire_timer(at(10_000)) is finished


def test_result_records_output_error_and_times() -> None:
    done = in_state(S.DELIVERED).complete(ResultStatus.FAILED, {"code": 7.0}, "disk full", at(9))
    assert (done.output, done.error, done.finish_time, done.deliver_time) == ({"code": 7.0}, "disk full", at(9), at(2))
    direct = in_state(S.SENT).complete(ResultStatus.SUCCEEDED, None, "", at(4))
    assert direct.deliver_time == at(4) and direct.output == {}


def test_duplicate_result_keeps_the_first() -> None:
    first = in_state(S.DELIVERED).complete(ResultStatus.SUCCEEDED, {"n": 1.0}, "", at(3))
    again = first.complete(ResultStatus.FAILED, {"n": 2.0}, "oops", at(4))
    assert (again.state, again.output, again.error, again.finish_time) == (S.SUCCEEDED, {"n": 1.0}, "", at(3))
    assert not again.last_transition.changed


def test_deadlines_per_state() -> None:
    pending = new()
    assert pending.expire_time == T0 + TTL
    assert pending.next_deadline() == Deadline(TimerKind.EXPIRE, T0 + TTL)
    sent = pending.mark_sent(at(1))
    assert sent.next_deadline() == Deadline(TimerKind.ACK, at(1) + ACK)
    delivered = sent.acknowledge(at(2))
    assert delivered.next_deadline() == Deadline(TimerKind.EXECUTION, at(2) + EXEC)


def test_a_timer_not_yet_due_changes_nothing() -> None:
    sent = new().mark_sent(at(1))
    assert sent.fire_timer(at(1 + ACK.total_seconds()) - timedelta(microseconds=1)) is sent


def test_expiry_of_a_pending_command() -> None:
    expired = new().fire_timer(T0 + TTL)
    assert expired.state is S.EXPIRED and expired.finish_time == T0 + TTL
    assert expired.last_transition.reason == "not delivered within its time to live (600s)"


def test_no_result_within_the_execution_timeout() -> None:
    delivered = in_state(S.DELIVERED)
    timed_out = delivered.fire_timer(at(2) + EXEC)
    assert timed_out.state is S.TIMED_OUT
    assert "no result within the execution timeout (60s)" in timed_out.last_transition.reason


def test_unacknowledged_sends_are_retried_with_backoff_then_time_out() -> None:
    c, now = new(), at(0)
    pauses = []
    for attempt in (1, 2, 3):
        assert c.ready_to_send(now)
        c = c.mark_sent(now)
        assert (c.state, c.attempts, c.send_time) == (S.SENT, attempt, now)
        now = now + ACK
        c = c.fire_timer(now)
        if attempt == 3:
            break
        assert c.state is S.PENDING and c.retry_time is not None
        assert not c.ready_to_send(now)  # the backoff runs first
        assert c.next_deadline() == Deadline(TimerKind.RESEND, c.retry_time)
        pauses.append(c.retry_time - now)
        now = c.retry_time
        c = c.fire_timer(now)  # the resend timer: ready again, no transition
        assert c.state is S.PENDING and c.ready_to_send(now) and c.retry_time is None
    assert pauses == [timedelta(seconds=1), timedelta(seconds=2)]
    assert c.state is S.TIMED_OUT and c.last_transition.reason == "not acknowledged (after 3 attempt(s))"
    reasons = [t.reason for t in c.history]
    assert "not acknowledged within 10s (attempt 1 of 3); sending again after 1s" in reasons


def test_backoff_grows_and_is_capped() -> None:
    assert [RETRY.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]


def test_a_late_ack_during_the_backoff_still_delivers() -> None:
    retrying = new().mark_sent(at(0)).fire_timer(at(10))
    assert retrying.state is S.PENDING
    delivered = retrying.acknowledge(at(10.5))
    assert delivered.state is S.DELIVERED and delivered.retry_time is None
    assert delivered.next_deadline() == Deadline(TimerKind.EXECUTION, at(10.5) + EXEC)
    assert "after its acknowledgement timeout" in delivered.last_transition.reason


def test_the_ttl_wins_over_a_retry_that_would_come_after_it() -> None:
    short = Command.create(tenant_id="acme", device_id="d", command="x", parameters={}, creator="c", request_id="",
                           request_hash="h", ttl=timedelta(seconds=10.5), delivery_timeout=ACK, execution_timeout=EXEC,
                           retry=RETRY, now=T0)
    retrying = short.mark_sent(T0).fire_timer(at(10))
    assert retrying.next_deadline() == Deadline(TimerKind.EXPIRE, at(10.5))
    assert not retrying.ready_to_send(at(10.5))
    assert retrying.fire_timer(at(10.5)).state is S.EXPIRED


def test_an_expired_pending_command_is_not_sendable() -> None:
    assert not new().ready_to_send(T0 + TTL)


def test_history_of_ignored_replies_is_bounded_but_transitions_are_kept() -> None:
    c = in_state(S.SUCCEEDED)
    for i in range(MAX_HISTORY * 2):
        c = c.acknowledge(at(10 + i))
    assert len(c.history) == MAX_HISTORY
    assert c.state is S.SUCCEEDED


def test_creation_is_recorded() -> None:
    c = new()
    assert c.history[0].from_state is None and c.history[0].to_state is S.PENDING
    assert c.history[0].reason == "created by ops@acme"
    assert len(c.id) == 32 and c.name == f"devices/dev1/commands/{c.id}"


@pytest.mark.parametrize("state", [S.PENDING, S.SENT, S.DELIVERED])
def test_the_platform_withdraws_an_unfinished_command_with_its_reason(state: CommandState) -> None:
    withdrawn = in_state(state).withdraw("device deleted", at(500))
    assert (withdrawn.state, withdrawn.finish_time, withdrawn.next_deadline()) == (S.CANCELED, at(500), None)
    assert withdrawn.last_transition == Transition(at(500), state, S.CANCELED, "device deleted")


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_withdrawing_a_finished_command_changes_nothing(state: CommandState) -> None:
    finished = in_state(state)
    assert finished.withdraw("device deleted", at(500)) is finished
