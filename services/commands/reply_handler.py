"""Applying device replies (the `MUSTER_COMMAND_REPLIES` inbox's handler): `ack` and `result` move a
command through its state machine, in one transaction per batch, with their events.

A reply naming a command that does not exist or is not the sending device's is refused on the
device's `errors` topic (UNKNOWN_COMMAND), as is a malformed one; a reply after a terminal state is
recorded in the history and changes nothing (the domain decides). A reply JetStream delivers again
(the service stopped between the commit and the ack) is recognised by its stream sequence and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from muster.runtime.db import Scope
from muster.runtime.device_inbox import DeviceError, DeviceMessage, InboxResult
from services.commands.domain import Command, ResultStatus
from services.commands.events import emit_transitions
from services.commands.replies import UNKNOWN_COMMAND, Outcome, Reply, ReplyKind, parse_reply
from services.commands.unit_of_work import UnitOfWorkFactory

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def apply_reply(command: Command, reply: Reply, now: datetime) -> Command:
    if reply.kind is ReplyKind.ACK:
        return command.acknowledge(now)
    status = ResultStatus.SUCCEEDED if reply.outcome is Outcome.SUCCEEDED else ResultStatus.FAILED
    return command.complete(status, reply.output, reply.error, now)


class ReplyHandler:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = _utcnow) -> None:
        self._uow = uow
        self._now = clock

    async def __call__(self, messages: Sequence[DeviceMessage]) -> InboxResult:
        errors: list[DeviceError] = []
        replies: list[tuple[DeviceMessage, Reply]] = []
        for message in messages:
            parsed = parse_reply(message)
            if isinstance(parsed, DeviceError):
                errors.append(parsed)
            else:
                replies.append((message, parsed))
        if replies:
            errors.extend(await self._apply(replies))
        return InboxResult(errors=errors)

    async def _apply(self, replies: list[tuple[DeviceMessage, Reply]]) -> list[DeviceError]:
        """One transaction. Rows are locked in command-id order (stable, so an ack stays before its
        result): two replicas' batches cannot deadlock on the same commands."""
        refused: list[DeviceError] = []
        async with self._uow(Scope.platform_wide()) as uow:
            for message, reply in sorted(replies, key=lambda item: item[1].command_id):
                if not await uow.delivery.first_application(message.stream_seq):
                    continue
                before = await uow.commands.get(reply.command_id, device_id=reply.device_id, lock=True)
                if before is None:
                    refused.append(DeviceError(reply.device_id, reply.topic, UNKNOWN_COMMAND,
                                               f"command {reply.command_id} is not a command of this device"))
                    continue
                after = apply_reply(before, reply, self._now())
                if after is before:
                    continue  # a late reply past the history's limit: nothing to record
                await uow.commands.save(after)
                emit_transitions(uow, before, after)
            await uow.commit()
        return refused
