"""`muster devices register` and `muster devices rotate-secret`: a device's secret, printed once.

register is what a device (or its installer) runs with a provisioning token, no operator token;
rotate-secret needs an operator token of the device's tenant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from muster.cli import output as out
from muster.cli.commands import call
from muster.cli.options import (
    DEFAULT_TIMEOUT,
    DataDirOption,
    DisplayNameOption,
    GrpcOption,
    Output,
    TimeoutOption,
    TokenOption,
    connection,
    parse_ttl,
    resource_name,
)
from muster.registry.v1 import provisioning_resources_pb2 as ppb
from muster.registry.v1 import provisioning_service_pb2 as prov
from muster.registry.v1 import provisioning_service_pb2_grpc as prov_grpc

SHOWN_ONCE = "The secret is shown only now: store it on the device (MQTT password)."

REGISTRATION: out.Columns = (
    ("DEVICE", lambda r: r.device.name),
    ("DISPLAY NAME", lambda r: r.device.display_name),
    ("STATE", lambda r: out.device_state(r.device.state)),
    ("CLAIMED", lambda r: "yes" if r.claimed else "no"),
    ("SECRET", lambda r: r.device_secret),
    ("MQTT HOST", lambda r: r.mqtt.host),
    ("MQTT PORT", lambda r: str(r.mqtt.port)),
    ("MQTT USERNAME", lambda r: r.mqtt.username),
    ("MQTT CLIENT ID", lambda r: r.mqtt.client_id),
    ("TOPIC PREFIX", lambda r: r.mqtt.topic_prefix),
)
ROTATION: out.Columns = (
    ("DEVICE", lambda r: r.device),
    ("SECRET", lambda r: r.device_secret),
    ("OLD SECRETS END", lambda r: out.when(r.previous_secrets_expire_time)),
    ("VALID SECRETS", lambda r: str(r.valid_secret_count)),
)


def register_device(
    provisioning_token: Annotated[str, typer.Option(
        "--provisioning-token", envvar="MUSTER_PROVISIONING_TOKEN", metavar="SECRET", show_default=False,
        help="The provisioning token's secret (mpt_...), from `muster provisioning-tokens create`.")],
    serial: Annotated[str, typer.Option("--serial", show_default=False, help="The device's manufacturer serial.")],
    display_name: DisplayNameOption = None,
    manufacturer: Annotated[str, typer.Option("--manufacturer", help="Hardware: manufacturer.")] = "",
    model: Annotated[str, typer.Option("--model", help="Hardware: model.")] = "",
    hardware_revision: Annotated[str, typer.Option("--hardware-revision", help="Hardware: revision.")] = "",
    firmware_version: Annotated[str, typer.Option("--firmware-version", help="Firmware version.")] = "",
    output: Annotated[Output, typer.Option(
        "--output", "-o", help="table for people, json for scripts (proto field names).")] = Output.table,
    grpc: GrpcOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT, data_dir: DataDirOption = None,
) -> None:
    """Register a device with a provisioning token (no operator token needed) and print its secret and
    MQTT connection details: the ONLY time the secret is shown.

    The device connects with username = its id and password = the secret.
    """
    request = prov.RegisterDeviceRequest(
        provisioning_token=provisioning_token, serial=serial, display_name=display_name or "",
        hardware=ppb.HardwareInfo(manufacturer=manufacturer, model=model, hardware_revision=hardware_revision,
                                  firmware_version=firmware_version))
    result = call(connection(grpc, None, timeout, data_dir),
                  lambda c: prov_grpc.ProvisioningServiceStub(c).RegisterDevice, request)
    out.emit_one(result, output, REGISTRATION)
    if output is Output.table:
        typer.echo(SHOWN_ONCE, err=True)


def rotate_secret(
    device: Annotated[str, typer.Argument(metavar="ID", show_default=False, help="Device id (or devices/ID).")],
    grace_period: Annotated[str | None, typer.Option(
        "--grace-period", metavar="DURATION", show_default=False,
        help="Keep the old secret(s) working this long (e.g. 10m, 24h; at most 30d). Default: none, the old "
             "secrets stop working now and the device's connection is cut.")] = None,
    output: Annotated[Output, typer.Option(
        "--output", "-o", help="table for people, json for scripts (proto field names).")] = Output.table,
    grpc: GrpcOption = None, token: TokenOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT,
    data_dir: DataDirOption = None,
) -> None:
    """Give a device a new secret (printed once); needs an operator token. Also gives a device created by
    an operator (never registered) its first secret."""
    request = prov.RotateDeviceSecretRequest(name=resource_name("devices", device, "ID"))
    if grace_period is not None:
        try:
            request.grace_period.CopyFrom(parse_ttl(grace_period))
        except typer.BadParameter as exc:
            raise typer.BadParameter(exc.message, param_hint="--grace-period") from None
    result = call(connection(grpc, token, timeout, data_dir),
                  lambda c: prov_grpc.ProvisioningServiceStub(c).RotateDeviceSecret, request)
    out.emit_one(result, output, ROTATION)
    if output is Output.table:
        typer.echo(SHOWN_ONCE, err=True)
