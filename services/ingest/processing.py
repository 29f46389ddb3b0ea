"""Turning one batch of captured device messages into rows and device-facing errors, without I/O.

The consumer hands in messages and the profiles of their devices; it gets back the rows to write,
the errors to publish on each device's errors topic, and which messages to deliver again later
(a device the projection does not know yet: the registry's event may be a moment behind).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from muster.runtime.device_inbox import DeviceError, DeviceMessage
from services.ingest.normalise import DeviceProfile, normalise
from services.ingest.payloads import Limits, Point, Reason, Rejection, parse_telemetry
from services.ingest.ratelimit import RateLimiter

TelemetryRow = tuple[str, str, str, datetime, float | None, bool | None, str | None, int, int]
"""(tenant_id, device_id, metric, ts, value_num, value_bool, value_str, stream_seq, idx): COPY order."""

ROW_COLUMNS = ("tenant_id", "device_id", "metric", "ts", "value_num", "value_bool", "value_str", "stream_seq", "idx")

RowT = TypeVar("RowT")


Inbound = DeviceMessage
"""One captured message, as the shared device inbox hands it in."""


@dataclass
class Outcome(Generic[RowT]):
    rows: list[RowT] = field(default_factory=list)
    errors: list[DeviceError] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # positions in the batch to redeliver later
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    rate_limited: int = 0
    provisional: int = 0  # messages stored before the registry projection knew their device


def row(profile: DeviceProfile, point: Point, stream_seq: int) -> TelemetryRow:
    value = point.value
    if isinstance(value, bool):
        return (profile.tenant_id, profile.device_id, point.metric, point.time, None, value, None,
                stream_seq, point.position)
    if isinstance(value, str):
        return (profile.tenant_id, profile.device_id, point.metric, point.time, None, None, value,
                stream_seq, point.position)
    return (profile.tenant_id, profile.device_id, point.metric, point.time, value, None, None,
            stream_seq, point.position)


def summarise(device_id: str, topic: str, rejections: Sequence[Rejection]) -> DeviceError:
    """One error per refused message: the first problem, and how many more there were."""
    first = rejections[0]
    more = f" (and {len(rejections) - 1} more problem(s) in this message)" if len(rejections) > 1 else ""
    return DeviceError(device_id, topic, first.code, first.message + more)


class BatchProcessor(Generic[RowT]):
    """What every stream's batch goes through: devices the projection does not know are delivered again
    a few times (its registry event may be a moment behind), then refused, unless the edge knows the
    device (it authenticated): then it is stored with its tenant but without template checks or key
    maps rather than lost; each device's messages pass a token bucket; the rest is converted by the
    subclass, which reports its own rejections."""

    what = "data"

    def __init__(self, limits: Limits, limiter: RateLimiter, *, unknown_device_retries: int,
                 monotonic: Callable[[], float], clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._limits = limits
        self._limiter = limiter
        self._retries = unknown_device_retries
        self._monotonic = monotonic
        self._clock = clock

    def process(self, batch: Sequence[Inbound], profiles: Mapping[str, DeviceProfile]) -> Outcome[RowT]:
        outcome: Outcome[RowT] = Outcome()
        now, wall = self._monotonic(), self._clock()
        for position, message in enumerate(batch):
            profile = profiles.get(message.device_id)
            if profile is None or profile.provisional:
                if message.deliveries < self._retries:
                    outcome.retry.append(position)
                    continue
                if profile is None:
                    self._refuse(outcome, message, Rejection(
                        Reason.UNKNOWN_DEVICE, f"the platform does not know this device (yet); its {self.what} "
                                               "was not stored"))
                    continue
                outcome.provisional += 1  # stored as sent: better than losing it while the projection lags
            if not self._limiter.allow(message.device_id, now):
                outcome.rate_limited += 1
                outcome.rejected[Reason.RATE_LIMITED] += 1
                if self._limiter.notify(message.device_id, now):
                    outcome.errors.append(DeviceError(
                        message.device_id, message.topic, Reason.RATE_LIMITED,
                        "too many messages: excess messages are dropped; you are told once per window"))
                continue
            rows, rejections = self.convert(message, profile, wall)
            outcome.rows.extend(rows)
            if rejections:
                outcome.rejected.update(r.code for r in rejections)
                outcome.errors.append(summarise(message.device_id, message.topic, rejections))
        return outcome

    @staticmethod
    def _refuse(outcome: Outcome[RowT], message: Inbound, rejection: Rejection) -> None:
        outcome.rejected[rejection.code] += 1
        outcome.errors.append(summarise(message.device_id, message.topic, [rejection]))

    def convert(self, message: Inbound, profile: DeviceProfile, now: datetime) -> tuple[list[RowT], list[Rejection]]:
        raise NotImplementedError


class TelemetryProcessor(BatchProcessor[TelemetryRow]):
    what = "data"

    def convert(self, message: Inbound, profile: DeviceProfile,
                now: datetime) -> tuple[list[TelemetryRow], list[Rejection]]:
        parsed = parse_telemetry(message.data, message.received, self._limits, now)
        kept, refused = normalise(parsed.points, profile)
        return [row(profile, point, message.stream_seq) for point in kept], parsed.rejections + refused
