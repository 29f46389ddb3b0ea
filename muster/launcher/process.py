"""Starting and stopping one child process the way every launcher child needs it: its own session
(a terminal's Ctrl-C reaches only the supervisor, which stops children in order), output appended
to its own log file, and a parent-death signal so a SIGKILLed supervisor leaves no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

_PR_SET_PDEATHSIG = 1

log = structlog.get_logger("muster.launcher")


def _pdeathsig(sig: signal.Signals) -> Callable[[], None]:
    """Runs in the child after fork and after any setuid (a credential change clears the setting),
    so it must stay async-signal-safe enough: one libc call, nothing else."""

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved in the parent, not after fork
    signum = int(sig)
    parent = os.getpid()

    def set_it() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        # The supervisor may already be gone between fork and prctl: then nobody will signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return set_it


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child. `stop_signal` asks it to shut down cleanly; `death_signal` is what the
    kernel sends it if the supervisor dies first."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    user: str | None = None
    cwd: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    death_signal: signal.Signals = signal.SIGTERM
    grace_seconds: float = 10.0


class Child:
    """A running child process and its log."""

    def __init__(self, spec: ChildSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.process = process
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.spec.log_path, lines)

    async def stop(self) -> int:
        """Ask nicely (stop_signal), wait `grace_seconds`, then SIGKILL. Returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(self.spec.stop_signal)
            try:
                await asyncio.wait_for(self.process.wait(), self.spec.grace_seconds)
            except TimeoutError:
                log.warning("child_killed", name=self.spec.name, pid=self.pid,
                            grace_seconds=self.spec.grace_seconds)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        code = self.process.returncode
        assert code is not None
        return code


async def spawn(spec: ChildSpec) -> Child:
    """Start the child; its stdout and stderr are appended to spec.log_path."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwnam(spec.user) if spec.user else None
    with spec.log_path.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting {spec.name}: "
                  f"{' '.join(spec.argv)}\n".encode())
        out.flush()
        process = await asyncio.create_subprocess_exec(
            *spec.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            env=dict(spec.env) if spec.env is not None else None, cwd=spec.cwd,
            start_new_session=True, preexec_fn=_pdeathsig(spec.death_signal),
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    log.debug("child_started", name=spec.name, pid=process.pid)
    return Child(spec, process)


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log, for error messages that show why a child failed."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
