"""`muster commands`: parameters from --param/--params, command names from ids, and the service the
CLI talks to (grpc.commands from endpoints.json)."""

from __future__ import annotations

import pytest
import typer

from muster.cli.commands_cli import command_name, connection, parse_params


def test_params_from_options() -> None:
    assert parse_params(["delay=5", "mode=soft", "force=true", 'label="x y"'], '{"a": [1]}') == {
        "a": [1], "delay": 5, "mode": "soft", "force": True, "label": "x y"}
    assert parse_params(None, None) == {}
    with pytest.raises(typer.BadParameter):
        parse_params(["novalue"], None)
    with pytest.raises(typer.BadParameter):
        parse_params(None, "[1, 2]")


def test_command_names() -> None:
    assert command_name("dev1", "abc") == "devices/dev1/commands/abc"
    assert command_name("devices/dev1", "abc") == "devices/dev1/commands/abc"
    assert command_name("ignored", "devices/d/commands/c") == "devices/d/commands/c"
    with pytest.raises(typer.BadParameter):
        command_name("dev1", "a/b")


def test_talks_to_the_commands_service() -> None:
    assert connection(None, None, 5.0, None).service == "commands"
