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
    streaming_paths: tuple[str, ...] = ()  # REST paths whose request bodies Envoy streams instead of buffering
    context: str = ""  # bounded context whose schema, database role and migrations it shares; default: name
    replicas: int = 1
    auth_callout: bool = False  # answers NATS auth callouts: gets the issuer key and a system-account URL
    device_publisher: bool = False  # publishes to devices over its own MQTT connection (MUSTER_DEVICE_MQTT_URL)
    system_events: bool = False  # reads NATS's system events (MUSTER_SYSTEM_NATS_URL: the system account user)

    @property
    def main_module(self) -> str:
        return self.module or f"services.{self.name}.main"

    @property
    def schema(self) -> str:
        """The PostgreSQL schema (and `services.<schema>` migrations package) this process uses."""
        return self.context or self.name

    @property
    def database_role(self) -> str:
        return f"muster_{self.schema}"

    @property
    def instances(self) -> tuple[str, ...]:
        """One name per process: the service name, or `<name>_1` … `<name>_<n>` for replicas."""
        if self.replicas <= 1:
            return (self.name,)
        return tuple(f"{self.name}_{i}" for i in range(1, self.replicas + 1))

    @property
    def nats_user(self) -> str:
        return f"muster_{self.name}"

    @property
    def mqtt_user(self) -> str:
        """The NATS user its platform-to-device MQTT connection logs in as (outside the auth callout)."""
        return f"muster_{self.name}_mqtt"

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
            "muster.registry.v1.GroupService",
            "muster.registry.v1.ProvisioningService",
            "muster.registry.v1.DeviceBulkService",
        ),
        streaming_paths=("/v1/devices:import",),
    ),
    # The device edge (ingest context): answers NATS's auth callout for MQTT devices and kicks cut
    # devices; no gRPC API (health and metrics only), several replicas in one queue group.
    ServiceSpec(name="edge", grpc_services=(), module="services.ingest.edge.main", context="ingest",
                replicas=2, auth_callout=True),
    # Telemetry and device logs: capture streams in, PostgreSQL out, queries over gRPC/REST. More
    # replicas share the same durable JetStream consumers (deliver group).
    ServiceSpec(name="ingest",
                grpc_services=("muster.ingest.v1.TelemetryService", "muster.ingest.v1.DeviceLogService")),
    # Device twins (desired/reported state, delta, revisions) and connectivity: reads the twin capture
    # stream, pushes desired state retained over its own MQTT connection, reads NATS's system events.
    ServiceSpec(name="twin", grpc_services=("muster.twin.v1.TwinService", "muster.twin.v1.ConnectivityService"),
                device_publisher=True,
                system_events=True),
    # Commands as tracked objects: the API, delivery over its own MQTT connection, device replies and
    # timers kept in PostgreSQL (any replica fires a due timer, never two).
    ServiceSpec(name="commands", grpc_services=("muster.commands.v1.CommandService",), device_publisher=True),
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
