"""Minimum role per ingest RPC. Anything not listed is refused (deny by default)."""

from __future__ import annotations

from muster.runtime.auth import Role

_TELEMETRY = "/muster.ingest.v1.TelemetryService/"
_LOGS = "/muster.ingest.v1.DeviceLogService/"

ACCESS_POLICY: dict[str, Role | None] = {
    _TELEMETRY + "QueryTelemetry": Role.VIEWER,
    _TELEMETRY + "ListLatestTelemetry": Role.VIEWER,
    _LOGS + "ListDeviceLogs": Role.VIEWER,
}
