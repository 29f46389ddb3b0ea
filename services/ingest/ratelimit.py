"""Per-device token buckets: a device may send `rate` messages/s sustained and `burst` at once.

Excess messages are dropped by the caller; `notify` says whether the device should be told now,
so a device that keeps flooding hears about it once per window, not once per message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float
    notified: float | None = None


class RateLimiter:
    def __init__(self, rate: float, burst: float, notice_window: float, *, max_idle: float = 600.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._window = notice_window
        self._max_idle = max_idle
        self._buckets: dict[str, _Bucket] = {}
        self._last_prune = 0.0

    def allow(self, device: str, now: float) -> bool:
        """Take one token for `device` at time `now` (monotonic seconds) if there is one."""
        bucket = self._buckets.get(device)
        if bucket is None:
            bucket = self._buckets[device] = _Bucket(tokens=self._burst, updated=now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if now - self._last_prune > self._max_idle:
            self._prune(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def notify(self, device: str, now: float) -> bool:
        """Whether to tell a limited device now (at most once per notice window)."""
        bucket = self._buckets.get(device)
        if bucket is None:
            return False
        if bucket.notified is not None and now - bucket.notified < self._window:
            return False
        bucket.notified = now
        return True

    def _prune(self, now: float) -> None:
        """Forget devices idle long enough that their bucket is full anyway (bounded memory)."""
        self._last_prune = now
        idle = [d for d, b in self._buckets.items()
                if now - b.updated > self._max_idle and (b.notified is None or now - b.notified > self._window)]
        for device in idle:
            del self._buckets[device]

    def __len__(self) -> int:
        return len(self._buckets)
