"""The one list of Muster's services: what the launcher starts, migrates, routes and health-checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ServiceSpec:
    """One bounded context: its process and the gRPC services it serves (Envoy transcodes these)."""

    name: str
    grpc_services: tuple[str, ...]
    module: str = ""  # default: services.<name>.main

    @property
    def main_module(self) -> str:
        return self.module or f"services.{self.name}.main"

    @property
    def database_role(self) -> str:
        return f"muster_{self.name}"

    @property
    def nats_user(self) -> str:
        return f"muster_{self.name}"

    @property
    def grpc_package_prefix(self) -> str:
        """Path prefix of every gRPC method of this context, e.g. `/muster.registry.v1.`."""
        return f"/muster.{self.name}.v1."


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="registry",
        grpc_services=(
            "muster.registry.v1.TenantService",
            "muster.registry.v1.SiteService",
            "muster.registry.v1.DeviceService",
            "muster.registry.v1.TokenService",
            "muster.registry.v1.TemplateService",
            "muster.registry.v1.SensorService",
            "muster.registry.v1.ModuleService",
        ),
    ),
)

STUB_MODULE = "muster.launcher.stub_service"


class UnknownService(ValueError):
    """A --services entry that names no known service or is malformed."""


def select_services(selection: str | None, known: Sequence[ServiceSpec] = SERVICES) -> tuple[ServiceSpec, ...]:
    """Parse `--services`/`MUSTER_SERVICES`: comma-separated names, each optionally `name=module` to
    run another module under that name (e.g. `registry=muster.launcher.stub_service` in tests)."""
    if selection is None or not selection.strip():
        return tuple(known)
    by_name = {spec.name: spec for spec in known}
    chosen: list[ServiceSpec] = []
    for entry in (part.strip() for part in selection.split(",")):
        if not entry:
            continue
        name, _, module = entry.partition("=")
        name, module = name.strip(), module.strip()
        if name not in by_name or not _NAME.match(name):
            raise UnknownService(f"unknown service {name!r}; known: {', '.join(sorted(by_name))}")
        if module and not _MODULE.match(module):
            raise UnknownService(f"{module!r} is not a Python module path")
        if any(spec.name == name for spec in chosen):
            raise UnknownService(f"service {name!r} is listed twice")
        chosen.append(replace(by_name[name], module=module) if module else by_name[name])
    if not chosen:
        raise UnknownService("no service selected")
    return tuple(chosen)
