"""Which loopback ports the platform listens on: fixed, documented defaults for people, free
ephemeral ports for tests that run several platforms side by side."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

HOST = "127.0.0.1"

DEFAULT_REST = 8080
DEFAULT_GRPC_BASE = 50051
DEFAULT_MQTT = 1883
DEFAULT_NATS = 4222
DEFAULT_NATS_MONITOR = 8222
DEFAULT_POSTGRES = 55432
DEFAULT_METRICS_BASE = 9464
DEFAULT_ENVOY_ADMIN = 9901


@dataclass(frozen=True)
class PortOverrides:
    """Ports asked for explicitly (flags/env); None means "use the default or a free one"."""

    rest: int | None = None
    grpc_base: int | None = None
    mqtt: int | None = None
    nats: int | None = None
    nats_monitor: int | None = None
    postgres: int | None = None
    metrics_base: int | None = None
    envoy_admin: int | None = None


@dataclass(frozen=True)
class PortPlan:
    """Every port of one platform run."""

    rest: int
    mqtt: int
    nats: int
    nats_monitor: int
    postgres: int
    envoy_admin: int
    grpc: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports; all sockets stay bound until every port is picked, so no
    port is handed out twice (another process may still grab one before we bind it: rare)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def plan_ports(services: Sequence[str], overrides: PortOverrides, *, ephemeral: bool) -> PortPlan:
    """Explicit overrides win; otherwise defaults, or free ports when `ephemeral`."""
    spare = iter(free_ports(6 + 2 * len(services)) if ephemeral else [])

    def pick(explicit: int | None, default: int) -> int:
        if explicit is not None:
            return explicit
        return next(spare) if ephemeral else default

    def pick_each(base: int | None, default_base: int) -> dict[str, int]:
        if base is not None:
            return {name: base + i for i, name in enumerate(services)}
        return {name: pick(None, default_base + i) for i, name in enumerate(services)}

    return PortPlan(
        rest=pick(overrides.rest, DEFAULT_REST),
        mqtt=pick(overrides.mqtt, DEFAULT_MQTT),
        nats=pick(overrides.nats, DEFAULT_NATS),
        nats_monitor=pick(overrides.nats_monitor, DEFAULT_NATS_MONITOR),
        postgres=pick(overrides.postgres, DEFAULT_POSTGRES),
        envoy_admin=pick(overrides.envoy_admin, DEFAULT_ENVOY_ADMIN),
        grpc=pick_each(overrides.grpc_base, DEFAULT_GRPC_BASE),
        metrics=pick_each(overrides.metrics_base, DEFAULT_METRICS_BASE),
    )


def ensure_free(plan: PortPlan) -> None:
    """Fail early with the port's name instead of letting a child die with "address in use"."""
    named = {"rest": plan.rest, "mqtt": plan.mqtt, "nats": plan.nats, "nats monitor": plan.nats_monitor,
             "postgres": plan.postgres, "envoy admin": plan.envoy_admin,
             **{f"{n} grpc": p for n, p in plan.grpc.items()},
             **{f"{n} metrics": p for n, p in plan.metrics.items()}}
    seen: dict[int, str] = {}
    for name, port in named.items():
        if port in seen:
            raise PortInUse(f"port {port} is given to both {seen[port]} and {name}")
        seen[port] = name
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError as exc:
                raise PortInUse(
                    f"the {name} port {HOST}:{port} is in use ({exc.strerror}): stop whatever holds it, "
                    "pick another port with a flag, or use --ephemeral-ports") from exc


class PortInUse(RuntimeError):
    """A port the platform needs is taken."""
