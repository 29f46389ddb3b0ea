"""Runs each service's migrations as the schema owner, in a subprocess (Alembic's env.py runs its
own event loop and imports the service's tables: keep that out of the supervisor)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import structlog

from muster.launcher.services import ServiceSpec

log = structlog.get_logger("muster.launcher")


class MigrationError(RuntimeError):
    """A service's migrations failed; the message carries their output."""


async def upgrade(spec: ServiceSpec, *, owner_url: str, log_path: Path) -> None:
    """`python -m muster.runtime.migrations upgrade --service <name>`; output goes to log_path and,
    on failure, into the error. Cancelled (timeout, Ctrl-C): the subprocess is killed. Migrations
    belong to the context (`spec.schema`): run them once per schema, not once per process."""
    env = {**os.environ, "MUSTER_MIGRATION_URL": owner_url, "MUSTER_SERVICE_ROLE": spec.database_role}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muster.runtime.migrations", "upgrade", "--service", spec.schema,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env)
    try:
        output, _ = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    text = output.decode(errors="replace")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as f:
        f.write(text)
    if proc.returncode != 0:
        raise MigrationError(f"migrations of {spec.schema} failed (exit {proc.returncode}):\n{text}")
    log.info("migrations_applied", service=spec.schema, seconds=round(time.monotonic() - started, 2))
