"""Minimum role per twin RPC: viewers read, operators change desired state. Anything not listed is
refused (deny by default)."""

from __future__ import annotations

from muster.runtime.auth import Role

_TWIN = "/muster.twin.v1.TwinService/"
_CONNECTIVITY = "/muster.twin.v1.ConnectivityService/"

ACCESS_POLICY: dict[str, Role | None] = {
    _TWIN + "GetTwin": Role.VIEWER,
    _TWIN + "GetTwinDelta": Role.VIEWER,
    _TWIN + "ListDesiredRevisions": Role.VIEWER,
    _TWIN + "UpdateDesired": Role.OPERATOR,
    _TWIN + "RollbackDesired": Role.OPERATOR,
    _CONNECTIVITY + "GetDeviceConnectivity": Role.VIEWER,
    _CONNECTIVITY + "ListConnectionEvents": Role.VIEWER,
    _CONNECTIVITY + "GetDeviceHealth": Role.VIEWER,
}
