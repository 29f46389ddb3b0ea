"""The simulated fleet's identities: registered once through RegisterDevice with a provisioning token,
kept with their secrets in a local state file (mode 0600) so a rerun reuses them and registers only the
devices it lacks."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from muster.simulator.device import Credentials

STATE_VERSION = 1
Register = Callable[[str], Awaitable[Credentials]]  # serial -> the registered device


def load(path: Path) -> list[Credentials]:
    """The devices in the state file; none when it does not exist yet."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    if not isinstance(content, dict) or content.get("version") != STATE_VERSION:
        raise ValueError(f"{path} is not a simulator state file (version {STATE_VERSION})")
    return [Credentials(id=d["id"], secret=d["secret"], serial=d.get("serial", "")) for d in content["devices"]]


def save(path: Path, devices: list[Credentials]) -> None:
    """Atomically, readable by the owner only (it holds device secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"version": STATE_VERSION,
            "devices": [{"id": d.id, "secret": d.secret, "serial": d.serial} for d in devices]}
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(body, out, indent=1)
    scratch.replace(path)


async def ensure(path: Path, count: int, register: Register, *, concurrency: int = 16,
                 batch: int = 200) -> tuple[list[Credentials], int]:
    """The first `count` devices of the state file, registering the missing ones (saved after every
    batch, so an interrupted run keeps what it registered). Returns (devices, newly registered)."""
    devices = load(path)
    missing = count - len(devices)
    if missing <= 0:
        return devices[:count], 0
    prefix = f"sim-{uuid.uuid4().hex[:8]}"
    gate = asyncio.Semaphore(concurrency)

    async def one(serial: str) -> Credentials:
        async with gate:
            return await register(serial)

    registered = 0
    for first in range(0, missing, batch):
        serials = [f"{prefix}-{n:06d}" for n in range(first, min(missing, first + batch))]
        results = await asyncio.gather(*(one(s) for s in serials), return_exceptions=True)
        done = [r for r in results if isinstance(r, Credentials)]
        devices += done
        registered += len(done)
        save(path, devices)
        for result in results:
            if isinstance(result, BaseException):
                raise result
    return devices, registered
