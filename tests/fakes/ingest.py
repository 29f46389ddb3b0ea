"""In-memory stand-ins for the ingest service's I/O: the projection's profile source and a clock."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from services.ingest.normalise import DeviceProfile


@dataclass
class FakeProfiles:
    """Profiles by device id; counts loads so tests can see what the cache asked for."""

    profiles: dict[str, DeviceProfile] = field(default_factory=dict)
    loads: list[set[str]] = field(default_factory=list)

    async def load(self, device_ids: Collection[str]) -> dict[str, DeviceProfile]:
        self.loads.append(set(device_ids))
        return {d: self.profiles[d] for d in device_ids if d in self.profiles}


@dataclass
class FakeMonotonic:
    """Monotonic seconds that only move when told."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
