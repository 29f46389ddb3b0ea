"""Counters of a simulation run and the rates printed from them. Pure: time is passed in."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Counters:
    offered: int = 0
    published: int = 0
    acked: int = 0
    errors: int = 0
    reconnects: int = 0
    heartbeats: int = 0


@dataclass(frozen=True)
class Report:
    """A line of output: totals, and rates over the last interval and the whole run."""

    connected: int
    devices: int
    seconds: float
    offered_rate: float
    published_rate: float
    acked_rate: float
    totals: Counters

    def line(self) -> str:
        t = self.totals
        return (f"[{self.seconds:7.1f}s] connected {self.connected}/{self.devices}  "
                f"offered {self.offered_rate:,.0f}/s  published {self.published_rate:,.0f}/s  "
                f"acked {self.acked_rate:,.0f}/s  (total: published {t.published:,}, acked {t.acked:,}, "
                f"errors {t.errors:,}, reconnects {t.reconnects:,})")

    def as_dict(self) -> dict[str, Any]:
        return {"connected": self.connected, "devices": self.devices, "seconds": round(self.seconds, 3),
                "offered_per_s": round(self.offered_rate, 1), "published_per_s": round(self.published_rate, 1),
                "acked_per_s": round(self.acked_rate, 1), **asdict(self.totals)}


class Stats:
    """Running counters; `report(now)` gives the rates since the previous report (or, with `overall`,
    since the start)."""

    def __init__(self, start: float) -> None:
        self.counters = Counters()
        self.start = start
        self._last_time, self._last = start, Counters()

    def restart(self, now: float) -> None:
        """Zero the counters in place (the devices hold this object) and measure from `now`."""
        for name, value in asdict(Counters()).items():
            setattr(self.counters, name, value)
        self.start, self._last_time, self._last = now, now, Counters()

    def report(self, now: float, *, connected: int, devices: int, overall: bool = False) -> Report:
        since, base = (self.start, Counters()) if overall else (self._last_time, self._last)
        span = max(now - since, 1e-9)
        c = self.counters
        report = Report(connected=connected, devices=devices, seconds=now - self.start,
                        offered_rate=(c.offered - base.offered) / span,
                        published_rate=(c.published - base.published) / span,
                        acked_rate=(c.acked - base.acked) / span, totals=Counters(**asdict(c)))
        if not overall:
            self._last_time, self._last = now, Counters(**asdict(c))
        return report
