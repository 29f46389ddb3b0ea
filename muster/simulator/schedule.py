"""Spreading R messages/s over N devices: a pacer says how many messages are due since the start, and a
round-robin picks whose turn it is, so every device sends R/N per second and the total is R, whatever
the tick length. Pure (time is passed in)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Pacer:
    """Messages due at a fixed total rate: `due(now)` is how many to send now so that, since `start`,
    exactly floor(rate * elapsed) were offered."""

    def __init__(self, rate: float, start: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.start, self.offered = rate, start, 0

    def due(self, now: float) -> int:
        target = int((now - self.start) * self.rate)
        count = max(0, target - self.offered)
        self.offered += count
        return count


class RoundRobin(Generic[T]):
    """Hands out the items in turn, skipping those `ready` says cannot take a message now. Returns
    None when none is ready (the message is offered but not sent: it counts against the achieved rate)."""

    def __init__(self, items: Sequence[T]) -> None:
        self._items, self._next = list(items), 0

    def __len__(self) -> int:
        return len(self._items)

    def take(self, ready: Callable[[T], bool]) -> T | None:
        for _ in range(len(self._items)):
            item = self._items[self._next]
            self._next = (self._next + 1) % len(self._items)
            if ready(item):
                return item
        return None
