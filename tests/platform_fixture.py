"""Run `muster up` as a real subprocess for tests: the same launcher, servers and ports a person gets,
on a throwaway data dir with ephemeral ports."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 120.0
STOP_TIMEOUT = 90.0
STUB_SERVICES = "registry=muster.launcher.stub_service"


@dataclass
class RunningPlatform:
    """A `muster up` process and what it published in run/endpoints.json."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    supervisor_log: Path
    endpoints: dict[str, Any] = field(default_factory=dict)

    @property
    def admin_token(self) -> str:
        return str(self.endpoints["admin_token"])

    @property
    def rest(self) -> str:
        return str(self.endpoints["rest"])

    @property
    def grpc(self) -> dict[str, str]:
        return dict(self.endpoints["grpc"])

    @property
    def mqtt(self) -> str:
        return str(self.endpoints["mqtt"])

    @property
    def nats(self) -> str:
        return str(self.endpoints["nats"])

    @property
    def postgres(self) -> str:
        return str(self.endpoints["postgres"])

    @property
    def envoy_admin(self) -> str:
        return str(self.endpoints["envoy_admin"])

    def pids(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "run" / "pids.json").read_text()))

    def secrets(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "secrets.json").read_text()))

    def supervisor_output(self) -> str:
        return self.supervisor_log.read_text(errors="replace")


@contextmanager
def scratch_dir(prefix: str = "muster-test-") -> Iterator[Path]:
    """A temp dir straight under the system temp dir, removed afterwards. Not pytest's tmp_path:
    every pytest session start chmods /tmp/pytest-of-<user> to 0700, which would cut PostgreSQL
    (running as its own unprivileged user) off from a data dir below it while it runs."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _clean_env(services: str | None) -> dict[str, str]:
    """No MUSTER_* from the developer's shell may leak in (ports, data dir...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    env["MUSTER_LAUNCHER_LOG_FORMAT"] = "json"
    if services:
        env["MUSTER_SERVICES"] = services
    return env


def _die_with_parent() -> Callable[[], None]:
    """SIGTERM the platform if the test process dies (e.g. pytest killed): no leftover platforms."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_pdeathsig() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def start_platform(data_dir: Path, *, services: str | None = None,
                   timeout: float = START_TIMEOUT) -> RunningPlatform:
    """Start `muster up` in its own session and wait for run/endpoints.json."""
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoints_file = data_dir / "run" / "endpoints.json"
    endpoints_file.unlink(missing_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-supervisor.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "muster.cli.app", "up", "--data-dir", str(data_dir), "--ephemeral-ports"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_clean_env(services),
            start_new_session=True, preexec_fn=_die_with_parent())
    running = RunningPlatform(data_dir=data_dir, process=process, supervisor_log=log_path)
    deadline = time.monotonic() + timeout
    while not endpoints_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"muster up exited with {process.returncode}:\n{running.supervisor_output()}")
        if time.monotonic() > deadline:
            stop_platform(running)
            raise RuntimeError(f"muster up was not ready within {timeout:.0f}s:\n{running.supervisor_output()}")
        time.sleep(0.1)
    running.endpoints = json.loads(endpoints_file.read_text())
    return running


def stop_platform(running: RunningPlatform, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, as a service manager would; SIGKILL the whole session only if it hangs."""
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
            raise AssertionError(f"muster up did not stop within {timeout:.0f}s:\n"
                                 f"{running.supervisor_output()}") from None
    return running.process.returncode


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def all_pids(pids: dict[str, Any]) -> list[int]:
    flat = [v for k, v in pids.items() if k != "services"]
    flat += [v for v in pids.get("services", {}).values() if v]
    return [int(p) for p in flat]


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """The pids still alive after `timeout` (empty when all are gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
