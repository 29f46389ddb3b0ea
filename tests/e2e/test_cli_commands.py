"""`muster commands` against a real platform: create (parameters, idempotency key), get, list (per device
and tenant-wide, filtered), wait (gives up at --timeout with the current state, returns at once for a
finished command), cancel (and a second cancel refused); and `create --wait` following a real MQTT
device that acknowledges and answers. The CLI runs in a worker thread (it runs its own event loop)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import PlatformLike
from typer.testing import Result

from .commands_api_support import commands_channel as commands_channel  # fixture
from .commands_support import CommandDevice, CommandsStub, command_device, online, reply
from .commands_support import commands as commands  # fixture
from .test_cli import as_json, muster
from .twin_support import next_json

pytestmark = pytest.mark.platform


async def cli(platform: PlatformLike, device: CommandDevice, *args: str) -> Result:
    return await asyncio.to_thread(muster, platform, "commands", *args, token=device.operator)


async def cli_json(platform: PlatformLike, device: CommandDevice, *args: str) -> Any:
    return await asyncio.to_thread(as_json, platform, "commands", *args, token=device.operator)


async def test_create_get_list_wait_and_cancel(platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    created = await cli_json(platform, device, "create", device.id, "reboot", "--param", "delay=2",
                             "--request-id", "cli-1", "--ttl", "600")
    name, command_id = created["name"], created["name"].rsplit("/", 1)[-1]
    assert name == f"{device.name}/commands/{command_id}" and created["state"] == "COMMAND_STATE_PENDING"
    assert created["parameters"] == {"delay": 2} and created["ttl"] == "600s"
    again = await cli_json(platform, device, "create", device.id, "reboot", "--param", "delay=2",
                           "--request-id", "cli-1", "--ttl", "600")
    assert again["name"] == name  # the same request with the same key: the same command
    reused = await cli(platform, device, "create", device.id, "reboot", "--param", "delay=3", "--request-id", "cli-1")
    assert reused.exit_code == 1 and "ALREADY_EXISTS" in reused.output

    assert (await cli_json(platform, device, "get", device.id, command_id))["name"] == name
    assert (await cli_json(platform, device, "get", "-", name))["name"] == name  # the full name works too
    listed = await cli_json(platform, device, "list", device.id)
    assert [c["name"] for c in listed["commands"]] == [name]
    everywhere = await cli(platform, device, "list", "--filter", 'state = PENDING AND command = "reboot"')
    assert everywhere.exit_code == 0 and command_id[:8] in everywhere.stdout and "PENDING" in everywhere.stdout
    assert (await cli_json(platform, device, "list", "--filter", "state = CANCELED"))["commands"] == []

    started = time.monotonic()
    waited = await cli_json(platform, device, "wait", device.id, command_id, "--timeout", "2")
    assert waited["state"] == "COMMAND_STATE_PENDING" and 1 <= time.monotonic() - started < 10

    canceled = await cli_json(platform, device, "cancel", device.id, command_id, "--reason", "wrong pump")
    assert canceled["state"] == "COMMAND_STATE_CANCELED"
    assert canceled["history"][-1]["reason"] == f"canceled by ops@{device.device.tenant}: wrong pump"
    started = time.monotonic()
    finished = await cli(platform, device, "wait", device.id, command_id)
    assert finished.exit_code == 0 and "CANCELED" in finished.stdout and "wrong pump" in finished.stdout
    assert time.monotonic() - started < 5  # a finished command is answered at once
    twice = await cli(platform, device, "cancel", device.id, command_id)
    assert twice.exit_code == 1 and "FAILED_PRECONDITION" in twice.output


async def test_create_and_wait_follows_a_device_that_answers(platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    async with online(platform, device) as mqtt:
        async def answer() -> None:
            message = await next_json(mqtt, device.topic("commands/+"), timeout=20)
            command_id = str(message["id"])
            assert message["name"] == "ping"
            await reply(mqtt, device, command_id, "ack")
            await reply(mqtt, device, command_id, "result", {"status": "succeeded", "output": {"pong": True}})

        device_side = asyncio.create_task(answer())
        result = await cli_json(platform, device, "create", device.id, "ping", "--wait", "--timeout", "20")
        await asyncio.wait_for(device_side, 5)
    assert result["state"] == "COMMAND_STATE_SUCCEEDED" and result["output"] == {"pong": True}
    assert [h["to_state"] for h in result["history"]][-3:] == [
        "COMMAND_STATE_SENT", "COMMAND_STATE_DELIVERED", "COMMAND_STATE_SUCCEEDED"]

