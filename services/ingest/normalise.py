"""Normalisation and template checks (seed 000): raw firmware keys become semantic keys through the
device's modules' `metric_key_map`; unmapped keys pass through unchanged; a value whose semantic key
the device's templates define must have that metric's type and lie in its range, or it is refused
while the rest of the message is kept."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.ingest.payloads import Point, Reason, Rejection


class MetricType(enum.IntEnum):
    """Mirrors muster.registry.v1.MetricType."""

    UNSPECIFIED = 0
    NUMBER = 1
    BOOL = 2
    STRING = 3


@dataclass(frozen=True)
class MetricSpec:
    type: MetricType
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class DeviceProfile:
    """What ingest knows about one device from the registry's events."""

    device_id: str
    tenant_id: str
    metrics: Mapping[str, MetricSpec] = field(default_factory=dict)
    key_map: Mapping[str, str] = field(default_factory=dict)
    provisional: bool = False
    """Known only from the edge's credentials projection (the device authenticated, so it exists and its
    tenant is known) while the registry projection has not caught up: no template, no key maps yet."""


def merge_key_maps(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """One map from several modules' maps; on a clash the first module (by id) wins."""
    merged: dict[str, str] = {}
    for mapping in maps:
        for raw, semantic in mapping.items():
            merged.setdefault(raw, semantic)
    return merged


def _type_of(value: float | bool | str) -> MetricType:
    if isinstance(value, bool):
        return MetricType.BOOL
    return MetricType.STRING if isinstance(value, str) else MetricType.NUMBER


def check(point: Point, spec: MetricSpec) -> Rejection | None:
    actual = _type_of(point.value)
    if spec.type is not MetricType.UNSPECIFIED and actual is not spec.type:
        return Rejection(Reason.TYPE_MISMATCH, f"metric {point.metric!r}: expected a {spec.type.name.lower()}, "
                                               f"got a {actual.name.lower()}")
    if actual is MetricType.NUMBER:
        assert isinstance(point.value, float)
        if (spec.min is not None and point.value < spec.min) or (spec.max is not None and point.value > spec.max):
            return Rejection(Reason.OUT_OF_RANGE, f"metric {point.metric!r}: {point.value:g} is outside "
                                                  f"[{_bound(spec.min)}, {_bound(spec.max)}]")
    return None


def _bound(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def normalise(points: Sequence[Point], profile: DeviceProfile) -> tuple[list[Point], list[Rejection]]:
    """Points under their semantic keys that pass the template's checks, and the refused ones."""
    kept: list[Point] = []
    rejections: list[Rejection] = []
    for point in points:
        semantic = profile.key_map.get(point.metric, point.metric)
        if semantic != point.metric:
            point = point._replace(metric=semantic)
        spec = profile.metrics.get(semantic)
        problem = check(point, spec) if spec is not None else None
        if problem is None:
            kept.append(point)
        else:
            rejections.append(problem)
    return kept, rejections
