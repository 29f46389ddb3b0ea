"""What devices send to their twin (`twin/reported`, `twin/get`), a batch at a time from the capture
stream, in one transaction: the twins of the batch are locked in device order, each report is merged in
stream order (a redelivered or late report is recognised by its stream sequence, see `documents`), the
changed twins are saved and their events emitted together. A malformed message becomes a `DeviceError`
(answered on the device's `errors` topic) and changes nothing; a message from a device without a twin
is retried a few times (the registry projection may lag) before it is refused. `twin/get` is answered
after the commit with the whole twin on `twin/get/accepted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import orjson
import structlog

from muster.runtime.db import Scope
from muster.runtime.device_inbox import DeviceError, DeviceMessage, InboxResult, UnknownDevices
from muster.runtime.device_publisher import DeliveryFailed
from services.twin import mapping
from services.twin.documents import LimitExceeded, Limits
from services.twin.reports import Refusal, parse_get, parse_report
from services.twin.twin import Report, Twin, apply_report
from services.twin.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

GET_ACCEPTED = "twin/get/accepted"
Answer = Callable[[str, str, bytes], Awaitable[None]]  # (device id, topic levels, payload): QoS 1


def twin_payload(twin: Twin) -> bytes:
    """The whole twin for the device: both documents, their versions, and what it has yet to apply."""
    return orjson.dumps({"desired": twin.desired, "desired_version": twin.desired_version,
                         "reported": twin.reported, "reported_version": twin.reported_version,
                         "delta": twin.delta().pending_patch()})


class TwinInbox:
    def __init__(self, uow: UnitOfWorkFactory, answer: Answer, limits: Limits, *, unknown: UnknownDevices,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._uow = uow
        self._answer = answer
        self._limits = limits
        self._unknown_devices = unknown
        self._now = clock

    async def handle(self, messages: Sequence[DeviceMessage]) -> InboxResult:
        errors: list[DeviceError] = []
        retry: set[int] = set()
        reports: list[tuple[int, DeviceMessage, Report]] = []
        gets: list[tuple[int, DeviceMessage]] = []
        for position, message in enumerate(messages):
            parsed = self._parse(message)
            if isinstance(parsed, Refusal):
                errors.append(DeviceError(message.device_id, message.topic, parsed.code, parsed.message))
            elif parsed is None:
                gets.append((position, message))
            else:
                reports.append((position, message, parsed))
        if not reports and not gets:
            return InboxResult(errors=errors)
        unknown: list[int] = []
        async with self._uow(Scope.platform_wide()) as uow:
            twins = await uow.twins.get_many_for_update([m.device_id for _, m in gets] +
                                                        [m.device_id for _, m, _ in reports])
            changed: dict[str, Twin] = {}
            for position, message, report in sorted(reports, key=lambda r: r[1].stream_seq):
                twin = twins.get(message.device_id)
                if twin is None:
                    unknown.append(position)
                    continue
                try:
                    change = apply_report(twin, report, seq=message.stream_seq, limits=self._limits,
                                          now=message.received)
                except LimitExceeded as exc:
                    errors.append(DeviceError(message.device_id, message.topic, exc.code, exc.message))
                    continue
                if not change.changed:
                    continue
                twins[message.device_id] = changed[message.device_id] = after = change.twin
                uow.emit(mapping.reported_changed(after, change.applied), subject=after.device, tenant=after.tenant_id)
                if change.sync_changed:
                    uow.emit(mapping.sync_changed(after), subject=after.device, tenant=after.tenant_id)
            await uow.twins.save_many(list(changed.values()))
            await uow.commit()
        answers = []
        for position, message in gets:
            twin = twins.get(message.device_id)
            if twin is None:
                unknown.append(position)
            else:
                answers.append(self._answer_get(twin))
        await asyncio.gather(*answers)
        self._unknown_devices.sort(messages, sorted(unknown), self._now(), errors, retry)
        return InboxResult(errors=errors, retry=retry)

    def _parse(self, message: DeviceMessage) -> Report | Refusal | None:
        levels = message.levels
        if levels == ("twin", "reported"):
            return parse_report(message.data, self._limits)
        if levels == ("twin", "get"):
            return parse_get(message.data, self._limits)
        return Refusal("UNKNOWN_TOPIC", f"the twin does not read {'/'.join(levels)}")

    async def _answer_get(self, twin: Twin) -> None:
        try:
            await self._answer(twin.device_id, GET_ACCEPTED, twin_payload(twin))
        except (DeliveryFailed, OSError) as exc:  # the device asks again
            log.warning("twin_get_answer_failed", device=twin.device_id, error=str(exc))
