"""A command as a tracked object: its state machine, deadlines and history. No I/O here.

Every operation is a pure function of the command and `now` that returns a new `Command`:

    PENDING --mark_sent--> SENT --acknowledge--> DELIVERED --complete--> SUCCEEDED | FAILED
    PENDING --fire_timer (ttl passed)--> EXPIRED
    SENT --fire_timer (no ack)--> PENDING (retry after a backoff) | TIMED_OUT ("not acknowledged")
    DELIVERED --fire_timer (no result)--> TIMED_OUT
    any non-terminal --cancel--> CANCELED

Terminal states are final: a device reply that arrives late (after a terminal state) or twice is
recorded in the history with `changed=False` and changes nothing else. Each command has at most ONE
pending timer, `next_deadline()`, which the timer worker stores (`commands.due_at`) and fires with
`fire_timer(now)`.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from muster.runtime.errors import FailedPrecondition

MAX_HISTORY = 100
"""Entries kept per command; replies that change nothing are no longer recorded past this (a device
repeating its result must not grow a row without bound). Real transitions are always recorded."""


class CommandState(enum.IntEnum):
    """Numbers match `muster.commands.v1.CommandState`."""

    PENDING = 1
    SENT = 2
    DELIVERED = 3
    SUCCEEDED = 4
    FAILED = 5
    TIMED_OUT = 6
    EXPIRED = 7
    CANCELED = 8

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({CommandState.SUCCEEDED, CommandState.FAILED, CommandState.TIMED_OUT,
                             CommandState.EXPIRED, CommandState.CANCELED})


class TimerKind(enum.StrEnum):
    """What a command's one pending timer does when it fires (stored in `commands.due_kind`)."""

    EXPIRE = "expire"  # PENDING past its time to live -> EXPIRED
    RESEND = "resend"  # PENDING after a retry backoff: ready to be sent again (no state change)
    ACK = "ack"  # SENT without acknowledgement -> PENDING for a retry, or TIMED_OUT
    EXECUTION = "execution"  # DELIVERED without a result -> TIMED_OUT


class ResultStatus(enum.Enum):
    """What the device's `result` message says (`"status": "succeeded"/"failed"`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Deadline:
    kind: TimerKind
    at: datetime


@dataclass(frozen=True)
class RetryPolicy:
    """How often a command is sent without acknowledgement before it times out, and the pause between
    sends: `initial_backoff * multiplier ** (n - 1)` after the n-th unacknowledged send, at most
    `max_backoff`."""

    max_attempts: int
    initial_backoff: timedelta
    multiplier: float
    max_backoff: timedelta

    def backoff(self, attempts: int) -> timedelta:
        """The pause after the `attempts`-th send went unacknowledged."""
        seconds = self.initial_backoff.total_seconds() * self.multiplier ** max(attempts - 1, 0)
        return min(timedelta(seconds=seconds), self.max_backoff)


@dataclass(frozen=True)
class Transition:
    """One history entry. `changed=False` records a reply that changed nothing (late or duplicate):
    then `from_state == to_state`."""

    time: datetime
    from_state: CommandState | None  # None for the creation
    to_state: CommandState
    reason: str
    changed: bool = True


def new_command_id() -> str:
    """32 hex characters: unguessable, and safe as an MQTT/NATS topic token (no `.`, `/`, `+`, `#`)."""
    return secrets.token_hex(16)


def _seconds(value: timedelta) -> str:
    total = value.total_seconds()
    return f"{total:g}s"


@dataclass(frozen=True)
class Command:
    tenant_id: str
    device_id: str
    id: str
    command: str  # the template's command definition it runs, e.g. "reboot"
    parameters: Mapping[str, Any]
    creator: str
    request_id: str  # idempotency key ("" for none)
    request_hash: str  # digest of the create request as sent: same key + other body is refused
    ttl: timedelta
    delivery_timeout: timedelta
    execution_timeout: timedelta
    retry: RetryPolicy
    create_time: datetime
    state: CommandState = CommandState.PENDING
    update_time: datetime | None = None
    send_time: datetime | None = None  # of the latest send
    deliver_time: datetime | None = None
    finish_time: datetime | None = None
    ack_deadline: datetime | None = None
    execution_deadline: datetime | None = None
    retry_time: datetime | None = None  # PENDING after an unacknowledged send: not before this
    attempts: int = 0  # sends so far
    output: Mapping[str, Any] | None = None
    error: str = ""
    history: tuple[Transition, ...] = field(default_factory=tuple)
    version: int = 1

    @property
    def name(self) -> str:
        return f"devices/{self.device_id}/commands/{self.id}"

    @property
    def expire_time(self) -> datetime:
        """A command not delivered by then expires."""
        return self.create_time + self.ttl

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @staticmethod
    def create(*, tenant_id: str, device_id: str, command: str, parameters: Mapping[str, Any], creator: str,
               request_id: str, request_hash: str, ttl: timedelta, delivery_timeout: timedelta,
               execution_timeout: timedelta, retry: RetryPolicy, now: datetime,
               command_id: str | None = None) -> Command:
        return Command(tenant_id=tenant_id, device_id=device_id, id=command_id or new_command_id(), command=command,
                       parameters=dict(parameters), creator=creator, request_id=request_id,
                       request_hash=request_hash, ttl=ttl, delivery_timeout=delivery_timeout,
                       execution_timeout=execution_timeout, retry=retry, create_time=now, update_time=now,
                       history=(Transition(now, None, CommandState.PENDING, f"created by {creator}"),))

    # --- timers ---------------------------------------------------------------------------------

    def next_deadline(self) -> Deadline | None:
        """The one timer this command waits for (None once terminal)."""
        if self.state is CommandState.PENDING:
            if self.retry_time is not None and self.retry_time < self.expire_time:
                return Deadline(TimerKind.RESEND, self.retry_time)
            return Deadline(TimerKind.EXPIRE, self.expire_time)
        if self.state is CommandState.SENT:
            assert self.ack_deadline is not None
            return Deadline(TimerKind.ACK, self.ack_deadline)
        if self.state is CommandState.DELIVERED:
            assert self.execution_deadline is not None
            return Deadline(TimerKind.EXECUTION, self.execution_deadline)
        return None

    def ready_to_send(self, now: datetime) -> bool:
        """PENDING, not expired and past any retry backoff: publish it if the device is online."""
        return (self.state is CommandState.PENDING and now < self.expire_time
                and (self.retry_time is None or self.retry_time <= now))

    def fire_timer(self, now: datetime) -> Command:
        """Apply the due timer, if any (a timer not yet due, or none, returns the command unchanged)."""
        deadline = self.next_deadline()
        if deadline is None or deadline.at > now:
            return self
        if deadline.kind is TimerKind.EXPIRE:
            return self._move(CommandState.EXPIRED, now,
                              f"not delivered within its time to live ({_seconds(self.ttl)})", finished=True)
        if deadline.kind is TimerKind.RESEND:
            return replace(self, retry_time=None, update_time=now)  # ready_to_send from now on
        if deadline.kind is TimerKind.ACK:
            if self.attempts < self.retry.max_attempts:
                pause = self.retry.backoff(self.attempts)
                return self._move(
                    CommandState.PENDING, now,
                    f"not acknowledged within {_seconds(self.delivery_timeout)} (attempt {self.attempts} of "
                    f"{self.retry.max_attempts}); sending again after {_seconds(pause)}",
                    ack_deadline=None, retry_time=now + pause)
            return self._move(CommandState.TIMED_OUT, now,
                              f"not acknowledged (after {self.attempts} attempt(s))", finished=True,
                              ack_deadline=None)
        return self._move(CommandState.TIMED_OUT, now,
                          f"no result within the execution timeout ({_seconds(self.execution_timeout)})",
                          finished=True, execution_deadline=None)

    # --- the platform -----------------------------------------------------------------------------

    def mark_sent(self, now: datetime) -> Command:
        """It was published to the device: wait for the acknowledgement until `ack_deadline`."""
        if not self.ready_to_send(now):
            raise FailedPrecondition(f"{self.name} is {self.state.name}, not ready to be sent",
                                     reason="COMMAND_NOT_SENDABLE")
        attempt = self.attempts + 1
        return self._move(CommandState.SENT, now, f"sent to the device (attempt {attempt} of "
                                                  f"{self.retry.max_attempts})",
                          send_time=now, attempts=attempt, retry_time=None, ack_deadline=now + self.delivery_timeout)

    def cancel(self, by: str, reason: str, now: datetime) -> Command:
        if self.terminal:
            raise FailedPrecondition(f"{self.name} already finished as {self.state.name}; it cannot be canceled",
                                     reason="COMMAND_FINISHED", metadata={"state": self.state.name})
        why = f"canceled by {by}" + (f": {reason}" if reason else "")
        return self.withdraw(why, now)

    def withdraw(self, reason: str, now: datetime) -> Command:
        """CANCELED with `reason` as given: the platform's own cancel when the device can no longer take
        the command (deleted, suspended, retired). A finished command is returned unchanged."""
        if self.terminal:
            return self
        return self._move(CommandState.CANCELED, now, reason, finished=True, ack_deadline=None,
                          execution_deadline=None, retry_time=None)

    # --- the device -------------------------------------------------------------------------------

    def acknowledge(self, now: datetime) -> Command:
        """The device has the command (`.../commands/{id}/ack`)."""
        if self.state is CommandState.SENT or self._resent_pending():
            late = " (after its acknowledgement timeout)" if self.state is CommandState.PENDING else ""
            return self._move(CommandState.DELIVERED, now, f"acknowledged by the device{late}", deliver_time=now,
                              ack_deadline=None, retry_time=None, execution_deadline=now + self.execution_timeout)
        return self._ignore(now, "acknowledgement")

    def complete(self, status: ResultStatus, output: Mapping[str, Any] | None, error: str,
                 now: datetime) -> Command:
        """The device's result (`.../commands/{id}/result`). A result without an acknowledgement implies
        delivery."""
        if self.state is CommandState.DELIVERED or self.state is CommandState.SENT or self._resent_pending():
            target = CommandState.SUCCEEDED if status is ResultStatus.SUCCEEDED else CommandState.FAILED
            said = "succeeded" if status is ResultStatus.SUCCEEDED else "failed" + (f": {error}" if error else "")
            unacked = "" if self.state is CommandState.DELIVERED else " (no acknowledgement before the result)"
            return self._move(target, now, f"the device reported it {said}{unacked}", finished=True,
                              deliver_time=self.deliver_time or now, output=dict(output or {}), error=error,
                              ack_deadline=None, execution_deadline=None, retry_time=None)
        return self._ignore(now, f"result ({status.value})")

    # --- internals --------------------------------------------------------------------------------

    def _resent_pending(self) -> bool:
        """PENDING again after an unacknowledged send: the device may still answer an earlier send."""
        return self.state is CommandState.PENDING and self.attempts > 0

    def _ignore(self, now: datetime, what: str) -> Command:
        if self.terminal:
            why = f"late {what} ignored: the command already finished as {self.state.name}"
        elif self.state is CommandState.DELIVERED:
            why = f"duplicate {what} ignored"
        else:
            why = f"{what} ignored: the command was never sent"
        if len(self.history) >= MAX_HISTORY:
            return self
        entry = Transition(now, self.state, self.state, why, changed=False)
        return replace(self, history=(*self.history, entry), update_time=now)

    def _move(self, to: CommandState, now: datetime, reason: str, *, finished: bool = False,
              **changes: Any) -> Command:
        entry = Transition(now, self.state, to, reason)
        if finished:
            changes["finish_time"] = now
        return replace(self, state=to, update_time=now, history=(*self.history, entry), **changes)

    @property
    def last_transition(self) -> Transition:
        return self.history[-1]
