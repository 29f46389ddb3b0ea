"""`muster simulate`: N registered devices as real MQTT clients, telemetry at R msg/s in total, with
heartbeats, birth and will; the demo after `muster up` and the load generator of bench/ingest.py."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from muster.cli.client import CliError, Connection, Session, data_dir_of, read_endpoints, run
from muster.cli.options import DEFAULT_TIMEOUT, DataDirOption, GrpcOption, TimeoutOption, connection
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc
from muster.simulator import fleet
from muster.simulator.device import Credentials
from muster.simulator.engine import RunOptions, simulate
from muster.simulator.stats import Report

STATE_FILE = "simulator-devices.json"


@dataclass(frozen=True)
class Plan:
    """The command's options, as given."""

    state: Path
    devices: int
    rate: float
    duration: float
    heartbeat: float
    report_every: float
    provisioning_token: str | None
    mqtt: str | None
    token_given: bool


def _mqtt_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"MQTT address {value!r} is not HOST:PORT")
    return host, int(port)


async def _provisioning_token(session: Session, given: str | None, count: int) -> str:
    """The token devices register with: the one given, else a fresh one (needs a tenant admin token)."""
    if given:
        return given
    created = await session.call(
        prov_grpc.ProvisioningServiceStub(session.channel).CreateProvisioningToken,
        prov.CreateProvisioningTokenRequest(provisioning_token=ppb.ProvisioningToken(
            display_name="muster simulate", max_uses=max(1, count))))
    return created.secret


async def _run(session: Session, conn: Connection, plan: Plan) -> Report:
    registered_mqtt: list[str] = []
    stub = prov_grpc.ProvisioningServiceStub(session.channel)
    token: list[str] = []

    async def register(serial: str) -> Credentials:
        if not token:
            token.append(await _provisioning_token(session, plan.provisioning_token, plan.devices))
        response = await stub.RegisterDevice(  # a device registers without an operator token
            prov.RegisterDeviceRequest(provisioning_token=token[0], serial=serial), timeout=conn.timeout)
        registered_mqtt.append(f"{response.mqtt.host}:{response.mqtt.port}")
        return Credentials(id=response.device_id, secret=response.device_secret, serial=serial)

    if len(fleet.load(plan.state)) < plan.devices and not plan.provisioning_token and not plan.token_given:
        raise CliError("new devices must be registered: pass --provisioning-token, or --token with a tenant "
                       "admin token to create one")
    devices, new = await fleet.ensure(plan.state, plan.devices, register)
    typer.echo(f"{len(devices)} devices ({new} newly registered, state in {plan.state})", err=True)
    address = plan.mqtt or read_endpoints(data_dir_of(conn)).get("mqtt") or (
        registered_mqtt[0] if registered_mqtt else None)
    if not isinstance(address, str):
        raise CliError("where is the MQTT server? pass --mqtt HOST:PORT")
    host, port = _mqtt_address(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    options = RunOptions(host=host, port=port, rate=plan.rate, duration=plan.duration or None,
                         heartbeat_seconds=plan.heartbeat, report_every=plan.report_every)
    typer.echo(f"connecting {len(devices)} devices to {host}:{port}; telemetry at {plan.rate:g} msg/s "
               f"for {f'{plan.duration:g}s' if plan.duration else 'ever (Ctrl-C stops)'}", err=True)
    return await simulate(devices, options, stop, lambda report: typer.echo(report.line()))


def simulate_command(
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=100_000, help="Simulated devices.")] = 10,
    rate: Annotated[float, typer.Option("--rate", "-r", min=0.001, help="Telemetry messages/s in total, "
                                        "spread evenly over the devices.")] = 10.0,
    duration: Annotated[float, typer.Option("--duration", min=0, metavar="SECONDS",
                                            help="How long to publish (0: until Ctrl-C).")] = 0.0,
    heartbeat: Annotated[float, typer.Option("--heartbeat", min=1, metavar="SECONDS",
                                             help="Heartbeat interval of each device.")] = 30.0,
    report_every: Annotated[float, typer.Option("--report-every", min=0.5, metavar="SECONDS",
                                                help="Print the rates this often.")] = 5.0,
    state: Annotated[Path | None, typer.Option(
        "--state", metavar="FILE", show_default=False,
        help="Where the devices' ids and secrets are kept (mode 0600); a rerun reuses them. "
             f"Default: <data-dir>/{STATE_FILE}.")] = None,
    provisioning_token: Annotated[str | None, typer.Option(
        "--provisioning-token", envvar="MUSTER_PROVISIONING_TOKEN", metavar="SECRET", show_default=False,
        help="Register new devices with this provisioning token (mpt_...; --max-uses must cover them).")] = None,
    mqtt: Annotated[str | None, typer.Option(
        "--mqtt", metavar="HOST:PORT", show_default=False,
        help="MQTT server. Default: mqtt from <data-dir>/run/endpoints.json.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the final figures as JSON.")] = False,
    grpc: GrpcOption = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="MUSTER_TOKEN", metavar="JWT", rich_help_panel="Connection", show_default=False,
        help="A tenant admin token: creates the provisioning token when --provisioning-token is not given.")]
    = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT, data_dir: DataDirOption = None,
) -> None:
    """Run simulated devices: register them (once), connect them over MQTT with their secrets, and publish
    telemetry at --rate msg/s in total, plus a birth message, heartbeats and the will {"online": false}.

    Prints every --report-every seconds and at the end: connected devices, offered, published and
    acknowledged (PUBACK) rates, errors the platform sent the devices, reconnects.
    """
    conn = connection(grpc, token, timeout, data_dir)
    plan = Plan(state=state or data_dir_of(conn) / STATE_FILE, devices=devices, rate=rate, duration=duration,
                heartbeat=heartbeat, report_every=report_every, provisioning_token=provisioning_token, mqtt=mqtt,
                token_given=bool(token))
    report = run(conn, lambda session: _run(session, conn, plan))
    if json_output:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(f"done: {report.line()}")

