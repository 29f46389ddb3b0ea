"""The processes under test: `muster up` on a scratch dir, the bare echo service, and their pids for
CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench._load import children_of
from bench._registry_config import log

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0
STOP_TIMEOUT = 90.0


@contextlib.contextmanager
def started_platform(services: str | None = None) -> Iterator[dict[str, Any]]:
    """`muster up` in its own session on a scratch dir; SIGTERM (then SIGKILL of the session) at exit.
    `services`: the launcher's MUSTER_SERVICES selection (default: every service)."""
    data_dir = Path(tempfile.mkdtemp(prefix="muster-bench-"))  # not under a 0700 dir: postgres runs as another user
    log_path = data_dir.parent / f"{data_dir.name}-supervisor.log"
    muster = Path(sys.executable).with_name("muster")
    argv = [str(muster) if muster.exists() else sys.executable, *([] if muster.exists() else ["-m", "muster.cli.app"]),
            "up", "--data-dir", str(data_dir), "--ephemeral-ports"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    if services:
        env["MUSTER_SERVICES"] = services
    endpoints_file = data_dir / "run" / "endpoints.json"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                   env=env, start_new_session=True)
    try:
        log(f"starting the platform in {data_dir} (pid {process.pid}, log {log_path})")
        deadline = time.monotonic() + START_TIMEOUT
        while not endpoints_file.exists():
            if process.poll() is not None:
                raise RuntimeError(f"muster up exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"muster up was not ready within {START_TIMEOUT:.0f}s; see {log_path}")
            time.sleep(0.1)
        endpoints: dict[str, Any] = json.loads(endpoints_file.read_text())
        yield endpoints
    finally:
        _stop_platform(process)
        shutil.rmtree(data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            log_path.unlink()


def _stop_platform(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        log("stopping the platform")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log("the platform did not stop in time: killing its session")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything left in its session (normally nothing)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


@contextlib.contextmanager
def started_echo(size: int) -> Iterator[tuple[str, int]]:
    """The bare echo service in its own process; yields (target, pid). It exits when its stdin closes."""
    process = subprocess.Popen([sys.executable, "-m", "bench._echo", "--size", str(size)],
                               cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()  # blocks until it listens (or exits)
        match = re.fullmatch(r"PORT (\d+)", line)
        if match is None:
            raise RuntimeError(f"the echo service did not start (said {line!r}, exit {process.poll()})")
        yield f"127.0.0.1:{match.group(1)}", process.pid
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def platform_pids(endpoints: dict[str, Any]) -> dict[str, Any]:
    pids_file = endpoints.get("pids_file") or str(Path(endpoints["data_dir"]) / "run" / "pids.json")
    try:
        pids: dict[str, Any] = json.loads(Path(pids_file).read_text())
    except (OSError, ValueError):
        return {}
    return pids


def cpu_groups(endpoints: dict[str, Any], echo_pid: int) -> dict[str, Callable[[], list[int]]]:
    pids = platform_pids(endpoints)
    groups: dict[str, Callable[[], list[int]]] = {"echo": lambda: [echo_pid]}
    registry = pids.get("services", {}).get("registry")
    if isinstance(registry, int):
        groups["registry"] = lambda: [registry]
    postgres = pids.get("postgres")
    if isinstance(postgres, int):
        groups["postgres"] = lambda: [postgres, *children_of(postgres)]
    envoy = pids.get("envoy")
    if isinstance(envoy, int):
        groups["envoy"] = lambda: [envoy]
    return groups
