"""What a simulated device reports: plausible, slowly changing readings (temperature random walk,
humidity, a draining battery, a door switch and an operating mode) and its heartbeat. Pure: the random
source is passed in, so tests can seed it."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("eco", "comfort", "boost")
METRICS_PER_MESSAGE = 5
FIRMWARE = "sim-1.0.0"


@dataclass
class Readings:
    """One device's sensor state; `step()` advances it by one reading."""

    rng: random.Random
    temperature: float = 21.0
    humidity: float = 45.0
    battery: float = 100.0
    door_open: bool = False
    mode: str = "eco"
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def seeded(cls, seed: str) -> Readings:
        rng = random.Random(seed)
        return cls(rng=rng, temperature=rng.uniform(17.0, 25.0), humidity=rng.uniform(30.0, 60.0),
                   battery=rng.uniform(60.0, 100.0), mode=rng.choice(MODES))

    def step(self) -> dict[str, Any]:
        """The next reading: metric name -> number, bool or string."""
        self.temperature = min(60.0, max(-20.0, self.temperature + self.rng.gauss(0.0, 0.1)))
        self.humidity = min(100.0, max(0.0, self.humidity + self.rng.gauss(0.0, 0.3)))
        self.battery = max(0.0, self.battery - self.rng.uniform(0.0, 0.01))
        if self.rng.random() < 0.02:
            self.door_open = not self.door_open
        if self.rng.random() < 0.005:
            self.mode = self.rng.choice(MODES)
        return {"temperature": round(self.temperature, 2), "humidity": round(self.humidity, 1),
                "battery": round(self.battery, 2), "door_open": self.door_open, "mode": self.mode}

    def heartbeat(self) -> dict[str, Any]:
        """The contract's optional health fields."""
        return {"battery": round(self.battery, 2), "rssi": self.rng.randint(-90, -40),
                "uptime": int(time.monotonic() - self.started)}


def telemetry(metrics: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return {"ts": now_ms, "metrics": metrics}


def birth(heartbeat_seconds: float) -> dict[str, Any]:
    """The birth message: firmware, and how often heartbeats come (the twin's STALE threshold)."""
    return {"online": True, "firmware": FIRMWARE, "heartbeat_interval": max(1, round(heartbeat_seconds))}
