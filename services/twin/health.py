"""The health status derived from a device's heartbeat: pure rules, no I/O. The heartbeat itself (its
fields, parsing and refusal codes) is the device contract's, shared with ingest:
`muster.runtime.device_heartbeat`. A malformed heartbeat is refused with a stable code (answered on the
device's `errors` topic) and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from muster.runtime.device_heartbeat import FIELDS, Refusal, parse_heartbeat

__all__ = ["DEFAULT_THRESHOLDS", "FIELDS", "Assessment", "HealthStatus", "Refusal", "Threshold", "assess",
           "parse_heartbeat", "thresholds_from"]


class HealthStatus(IntEnum):
    """Mirrors muster.twin.v1.HealthStatus."""

    UNKNOWN = 1
    OK = 2
    DEGRADED = 3
    CRITICAL = 4


@dataclass(frozen=True)
class Threshold:
    """`below`: low values are bad (battery, rssi); otherwise high values are."""

    warning: float
    critical: float
    below: bool = False

    def level(self, value: float) -> HealthStatus:
        if self._past(value, self.critical):
            return HealthStatus.CRITICAL
        if self._past(value, self.warning):
            return HealthStatus.DEGRADED
        return HealthStatus.OK

    def _past(self, value: float, limit: float) -> bool:
        return value < limit if self.below else value > limit


DEFAULT_THRESHOLDS: Mapping[str, Threshold] = {
    "battery": Threshold(warning=20, critical=10, below=True),
    "rssi": Threshold(warning=-85, critical=-100, below=True),
    "cpu": Threshold(warning=90, critical=98),
    "memory": Threshold(warning=85, critical=95),
    "disk": Threshold(warning=85, critical=95),
    "temperature": Threshold(warning=70, critical=85),
}


def thresholds_from(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Threshold]:
    """The defaults with a deployment's overrides, e.g. `{"battery": {"warning": 30, "critical": 15}}`."""
    merged = dict(DEFAULT_THRESHOLDS)
    for name, spec in overrides.items():
        if name not in FIELDS:
            raise ValueError(f"health threshold for unknown field {name!r}; known: {', '.join(FIELDS)}")
        base = merged.get(name, Threshold(math.inf, math.inf))
        merged[name] = Threshold(float(spec.get("warning", base.warning)), float(spec.get("critical", base.critical)),
                                 bool(spec.get("below", base.below)))
    return merged


@dataclass(frozen=True)
class Assessment:
    status: HealthStatus
    findings: tuple[str, ...]


def assess(values: Mapping[str, float] | None, thresholds: Mapping[str, Threshold]) -> Assessment:
    """The worst level over the values that have a threshold; UNKNOWN without a heartbeat."""
    if values is None:
        return Assessment(HealthStatus.UNKNOWN, ())
    status, findings = HealthStatus.OK, []
    for name in FIELDS:
        threshold = thresholds.get(name)
        if name not in values or threshold is None:
            continue
        level = threshold.level(values[name])
        if level is HealthStatus.OK:
            continue
        limit = threshold.critical if level is HealthStatus.CRITICAL else threshold.warning
        side = "below" if threshold.below else "above"
        findings.append(f"{name} {values[name]:g} {side} {limit:g} ({level.name.lower()})")
        status = max(status, level)
    return Assessment(status, tuple(findings))
