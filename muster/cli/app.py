"""The `muster` command line."""

from __future__ import annotations

import typer

from muster.cli.up import up

app = typer.Typer(no_args_is_help=True)
app.command("up")(up)


@app.callback()
def _root() -> None:
    """Muster: multi-tenant IoT fleet management."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
