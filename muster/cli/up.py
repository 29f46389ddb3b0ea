"""`muster up`: the whole platform on this machine, in the foreground, until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer

from muster.launcher.envoy import DEFAULT_CORS_ORIGINS
from muster.launcher.layout import DATA_DIR_ENV, AlreadyRunning, default_data_dir, summary
from muster.launcher.platform import LaunchError, LaunchOptions, Platform
from muster.launcher.ports import PortInUse, PortOverrides
from muster.launcher.services import UnknownService, select_services


def configure_logging(level: str, fmt: str) -> None:
    """The supervisor's own log: structlog to stderr (children log into <data>/logs/)."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def up(
    data_dir: Annotated[Path | None, typer.Option(
        envvar=DATA_DIR_ENV, help="Persistent data (default ~/.local/share/muster).")] = None,
    ephemeral_ports: Annotated[bool, typer.Option(
        "--ephemeral-ports", help="Pick free loopback ports instead of the defaults.")] = False,
    rest_port: Annotated[int | None, typer.Option(envvar="MUSTER_REST_PORT", help="REST gateway [8080].")] = None,
    grpc_port: Annotated[int | None, typer.Option(
        envvar="MUSTER_GRPC_PORT", help="First service's gRPC port; the next ones follow [50051].")] = None,
    mqtt_port: Annotated[int | None, typer.Option(envvar="MUSTER_MQTT_PORT", help="MQTT [1883].")] = None,
    nats_port: Annotated[int | None, typer.Option(envvar="MUSTER_NATS_PORT", help="NATS [4222].")] = None,
    nats_monitor_port: Annotated[int | None, typer.Option(
        envvar="MUSTER_NATS_MONITOR_PORT", help="NATS monitoring [8222].")] = None,
    postgres_port: Annotated[int | None, typer.Option(
        envvar="MUSTER_POSTGRES_PORT", help="PostgreSQL [55432].")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        envvar="MUSTER_METRICS_PORT", help="First service's metrics port [9464].")] = None,
    envoy_admin_port: Annotated[int | None, typer.Option(
        envvar="MUSTER_ENVOY_ADMIN_PORT", help="Envoy admin [9901].")] = None,
    services: Annotated[str | None, typer.Option(
        envvar="MUSTER_SERVICES",
        help="Comma-separated services to run (default: all); `name=module` runs another module "
             "under that name.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        envvar="MUSTER_CORS_ORIGINS", help="Origin allowed to call the REST API (repeatable).")] = None,
    log_level: Annotated[str, typer.Option(envvar="MUSTER_LOG_LEVEL", help="Services' log level.")] = "info",
    log_format: Annotated[str, typer.Option(
        envvar="MUSTER_LAUNCHER_LOG_FORMAT", help="Launcher log: console or json.")] = "console",
) -> None:
    """Start PostgreSQL, NATS (JetStream + MQTT), every service and the Envoy REST gateway."""
    configure_logging("info", log_format)
    try:
        options = LaunchOptions(
            data_dir=data_dir or default_data_dir(),
            services=select_services(services),
            ports=PortOverrides(rest=rest_port, grpc_base=grpc_port, mqtt=mqtt_port, nats=nats_port,
                                nats_monitor=nats_monitor_port, postgres=postgres_port,
                                metrics_base=metrics_port, envoy_admin=envoy_admin_port),
            ephemeral_ports=ephemeral_ports,
            cors_origins=tuple(cors_origin) if cors_origin else DEFAULT_CORS_ORIGINS,
            service_log_level=log_level,
        )
    except UnknownService as exc:
        raise typer.BadParameter(str(exc), param_hint="--services") from exc

    def announce(endpoints: dict[str, Any]) -> None:
        print(summary(endpoints), flush=True)

    try:
        code = asyncio.run(Platform(options).run(announce))
    except (LaunchError, AlreadyRunning, PortInUse, RuntimeError) as exc:
        print(f"muster up: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)
