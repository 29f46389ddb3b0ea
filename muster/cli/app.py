"""The `muster` command line."""

from __future__ import annotations

import typer

from muster.cli import commands_cli, devices, groups, provisioning_tokens, sites, tenants, tokens, twin
from muster.cli.simulate import simulate_command
from muster.cli.up import up

app = typer.Typer(no_args_is_help=True)
app.command("up")(up)
app.add_typer(tenants.app, name="tenants")
app.add_typer(tokens.app, name="tokens")
app.add_typer(sites.app, name="sites")
app.add_typer(devices.app, name="devices")
app.add_typer(groups.app, name="groups")
app.add_typer(provisioning_tokens.app, name="provisioning-tokens")
app.add_typer(twin.app, name="twin")
app.add_typer(commands_cli.app, name="commands")
app.command("simulate")(simulate_command)


@app.callback()
def _root() -> None:
    """Muster: multi-tenant IoT fleet management."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
