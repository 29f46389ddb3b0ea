"""Device profiles for the hot path: read from the registry projection in one query per batch for the
devices not seen within the TTL, then served from memory (no call to the registry per message)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

import orjson

from services.ingest.normalise import DeviceProfile, MetricSpec, MetricType, merge_key_maps

_DEVICES = """
SELECT d.device_id, d.tenant_id, t.metrics, false AS provisional
FROM ingest.registry_devices d LEFT JOIN ingest.registry_templates t ON t.template_id = d.template_id
WHERE d.device_id = ANY($1::text[])
UNION ALL
SELECT e.device_id, e.tenant_id, NULL, true
FROM ingest.edge_devices e
WHERE e.device_id = ANY($1::text[]) AND NOT e.deleted
  AND NOT EXISTS (SELECT 1 FROM ingest.registry_devices d WHERE d.device_id = e.device_id)
  AND NOT EXISTS (SELECT 1 FROM ingest.registry_tombstones t WHERE t.device_id = e.device_id)
"""
"""The registry projection's devices, and, for a device it does not know yet, the edge's record of it
(a device that could publish has credentials there, with its tenant): a provisional profile."""

_MODULES = """
SELECT m.device_id, m.metric_key_map, t.metrics
FROM ingest.registry_modules m LEFT JOIN ingest.registry_templates t ON t.template_id = m.template_id
WHERE m.device_id = ANY($1::text[]) ORDER BY m.device_id, m.module_id
"""


class ProfileSource(Protocol):
    async def load(self, device_ids: Collection[str]) -> dict[str, DeviceProfile]: ...


def metric_specs(raw: Any) -> dict[str, MetricSpec]:
    """The projection's `{"key": {"type": n, "min": x, "max": y}}` as specs."""
    data = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(data, dict):
        return {}
    return {key: MetricSpec(MetricType(int(spec.get("type", 0))), spec.get("min"), spec.get("max"))
            for key, spec in data.items()}


def _json(raw: Any) -> Any:
    return orjson.loads(raw) if isinstance(raw, str | bytes) else raw


class ProjectionProfiles:
    """Profiles from the projection tables (platform scope: the hot path serves every tenant)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def load(self, device_ids: Collection[str]) -> dict[str, DeviceProfile]:
        ids = list(device_ids)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('muster.platform', 'on', true)")
            devices = await conn.fetch(_DEVICES, ids)
            modules = await conn.fetch(_MODULES, ids)
        maps: dict[str, list[dict[str, str]]] = {}
        module_metrics: dict[str, dict[str, MetricSpec]] = {}
        for m in modules:
            maps.setdefault(m["device_id"], []).append(dict(_json(m["metric_key_map"])))
            for key, spec in metric_specs(m["metrics"]).items():
                module_metrics.setdefault(m["device_id"], {}).setdefault(key, spec)
        profiles: dict[str, DeviceProfile] = {}
        for d in devices:
            device_id = d["device_id"]
            specs = {**module_metrics.get(device_id, {}), **metric_specs(d["metrics"])}  # the device's own win
            profiles[device_id] = DeviceProfile(device_id, d["tenant_id"], specs,
                                                merge_key_maps(maps.get(device_id, [])), d["provisional"])
        return profiles


class ProfileCache:
    """Profiles remembered for `ttl` seconds; a device the projection lacks (or knows only provisionally)
    only for `unknown_ttl` (its registry event may arrive any moment)."""

    def __init__(self, source: ProfileSource, *, ttl: float, monotonic: Callable[[], float],
                 unknown_ttl: float = 1.0, max_entries: int = 200_000) -> None:
        self._source = source
        self._ttl = ttl
        self._unknown_ttl = min(unknown_ttl, ttl)
        self._now = monotonic
        self._max = max_entries
        self._entries: dict[str, tuple[DeviceProfile | None, float]] = {}

    async def get_many(self, device_ids: Collection[str]) -> Mapping[str, DeviceProfile]:
        now = self._now()
        stale = [d for d in set(device_ids) if (e := self._entries.get(d)) is None
                 or now - e[1] > (self._ttl if e[0] is not None and not e[0].provisional else self._unknown_ttl)]
        if stale:
            loaded = await self._source.load(stale)
            if len(self._entries) + len(stale) > self._max:
                self._entries.clear()
            for device_id in stale:
                self._entries[device_id] = (loaded.get(device_id), now)
        found: dict[str, DeviceProfile] = {}
        for device_id in device_ids:
            profile = self._entries[device_id][0]
            if profile is not None:
                found[device_id] = profile
        return found
