"""Commands delivered to a real MQTT device through the whole platform: the registry's events, the
twin's presence, the commands service's timers, MQTT both ways."""

from __future__ import annotations

import asyncio

import pytest
from helpers import RPC_TIMEOUT, PlatformLike, bearer

from muster.commands.v1 import command_service_pb2 as svc
from muster.commands.v1 import resources_pb2 as cpb

from .commands_api_support import commands_channel as commands_channel  # fixture
from .commands_support import (
    CommandsStub,
    command_device,
    command_id,
    create,
    get,
        no_message,
    online,
    reply,
    wait,
)
from .commands_support import commands as commands  # fixture
from .twin_support import next_json

pytestmark = pytest.mark.platform


def states(command: cpb.Command) -> list[str]:
    return [cpb.CommandState.Name(t.to_state).removeprefix("COMMAND_STATE_") for t in command.history if t.changed]


async def test_happy_path_the_device_gets_it_acks_and_succeeds(
        platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    async with online(platform, device) as mqtt:
        created = await create(commands, device, parameters={"delay": 3})
        got = await next_json(mqtt, device.topic("commands/+"))
        assert got == {"id": command_id(created.name), "name": "reboot", "params": {"delay": 3},
                       "expires_at": got["expires_at"]}
        assert got["expires_at"].endswith("Z")
        await reply(mqtt, device, got["id"], "ack")
        await reply(mqtt, device, got["id"], "result", {"status": "succeeded", "output": {"uptime": 0}})
        done = await wait(commands, device, created.name)
    assert done.state == cpb.COMMAND_STATE_SUCCEEDED
    assert dict(done.output) == {"uptime": 0} and done.attempts == 1
    assert states(done) == ["PENDING", "SENT", "DELIVERED", "SUCCEEDED"]


async def test_an_offline_device_gets_its_commands_oldest_first_when_it_comes_online(
        platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    created = [await create(commands, device, parameters={"delay": i}) for i in range(3)]
    await asyncio.sleep(1.0)
    assert (await get(commands, device, created[0].name)).state == cpb.COMMAND_STATE_PENDING
    async with online(platform, device) as mqtt:
        got = [await next_json(mqtt, device.topic("commands/+"), timeout=20) for _ in created]
        assert [g["id"] for g in got] == [command_id(c.name) for c in created]
        for g in got:
            await reply(mqtt, device, g["id"], "result", {"status": "failed", "error": "busy"})
        finished = [await wait(commands, device, c.name) for c in created]
    assert {f.state for f in finished} == {cpb.COMMAND_STATE_FAILED}
    assert finished[0].error == "busy"


async def test_an_offline_device_past_the_ttl_never_gets_it(platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    created = await create(commands, device, ttl=1)
    done = await wait(commands, device, created.name)
    assert done.state == cpb.COMMAND_STATE_EXPIRED
    async with online(platform, device) as mqtt:
        assert await no_message(mqtt, device.topic("commands/+"), within=2.0)


async def test_a_device_that_never_acks_gets_it_again_then_it_times_out(
        platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    async with online(platform, device) as mqtt:
        created = await create(commands, device, delivery_timeout=1, max_attempts=3, initial_backoff=0.5)
        got = [await next_json(mqtt, device.topic("commands/+")) for _ in range(3)]
        assert {g["id"] for g in got} == {command_id(created.name)}  # the same command: de-duplicate by id
        done = await wait(commands, device, created.name)
        assert await no_message(mqtt, device.topic("commands/+"), within=1.5)
    assert done.state == cpb.COMMAND_STATE_TIMED_OUT and done.attempts == 3
    assert "not acknowledged" in done.history[-1].reason


async def test_a_device_that_acks_but_never_answers_times_out(
        platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    async with online(platform, device) as mqtt:
        created = await create(commands, device, execution_timeout=1)
        got = await next_json(mqtt, device.topic("commands/+"))
        await reply(mqtt, device, got["id"], "ack")
        done = await wait(commands, device, created.name)
        await reply(mqtt, device, got["id"], "result", {"status": "succeeded"})  # too late
        await asyncio.sleep(1.0)
    assert done.state == cpb.COMMAND_STATE_TIMED_OUT and "no result" in done.history[-1].reason
    late = await get(commands, device, created.name)
    assert late.state == cpb.COMMAND_STATE_TIMED_OUT
    assert not late.history[-1].changed and "late" in late.history[-1].reason


async def test_a_canceled_command_is_never_sent(platform: PlatformLike, commands: CommandsStub) -> None:


    device = await command_device(platform, commands)
    created = await create(commands, device)
    canceled = await commands.CancelCommand(svc.CancelCommandRequest(name=created.name, reason="changed my mind"),
                                            metadata=bearer(device.operator), timeout=RPC_TIMEOUT)
    assert canceled.state == cpb.COMMAND_STATE_CANCELED
    async with online(platform, device) as mqtt:
        assert await no_message(mqtt, device.topic("commands/+"), within=2.0)


async def test_replies_for_unknown_commands_and_malformed_results_are_answered_on_errors(
        platform: PlatformLike, commands: CommandsStub) -> None:
    device = await command_device(platform, commands)
    async with online(platform, device) as mqtt:
        await reply(mqtt, device, "0" * 32, "ack")
        error = await next_json(mqtt, device.topic("errors"))
        assert error["code"] == "UNKNOWN_COMMAND"
        assert error["topic"] == device.topic(f"commands/{'0' * 32}/ack")
        created = await create(commands, device)
        got = await next_json(mqtt, device.topic("commands/+"))
        await reply(mqtt, device, got["id"], "result", {"status": "maybe"})
        error = await next_json(mqtt, device.topic("errors"))
        assert error["code"] == "INVALID_RESULT"
        assert (await get(commands, device, created.name)).state == cpb.COMMAND_STATE_SENT
