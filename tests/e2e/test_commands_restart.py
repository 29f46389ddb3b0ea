"""kill -9 of the commands service mid-flight: the launcher restarts it and no timer is lost (they
live in PostgreSQL): an unacknowledged command is sent again, an acknowledged one without a result
times out, both after the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from platform_fixture import RunningPlatform, alive

from muster.commands.v1 import resources_pb2 as cpb

from .commands_api_support import commands_channel as commands_channel  # fixture
from .commands_support import CommandsStub, command_device, command_id, create, online, reply, wait
from .commands_support import commands as commands  # fixture
from .twin_support import next_json

pytestmark = pytest.mark.platform


async def test_timers_survive_a_kill_9_of_the_commands_service(
        platform: RunningPlatform, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    async with online(platform, device) as mqtt:
        unacked = await create(commands, device, delivery_timeout=4, max_attempts=2, initial_backoff=0.5)
        first = await next_json(mqtt, device.topic("commands/+"))
        assert first["id"] == command_id(unacked.name)
        silent = await create(commands, device, "ping", execution_timeout=5)
        ping = await next_json(mqtt, device.topic("commands/+"))
        await reply(mqtt, device, ping["id"], "ack")

        victim = int(platform.pids()["services"]["commands"])
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        deadline = killed_at + 60
        while alive(victim) or int(platform.pids()["services"]["commands"]) == victim:
            assert time.monotonic() < deadline, "the launcher did not restart the commands service"
            await asyncio.sleep(0.1)

        again = await next_json(mqtt, device.topic("commands/+"), timeout=60)  # resent by the new process
        assert again["id"] == first["id"] and time.monotonic() - killed_at > 3.0
        await reply(mqtt, device, again["id"], "ack")
        await reply(mqtt, device, again["id"], "result", {"status": "succeeded"})
        done = await wait(commands, device, unacked.name, within=60)
        timed_out = await wait(commands, device, silent.name, within=60)
    assert done.state == cpb.COMMAND_STATE_SUCCEEDED and done.attempts == 2
    assert timed_out.state == cpb.COMMAND_STATE_TIMED_OUT and "no result" in timed_out.history[-1].reason
