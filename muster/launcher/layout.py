"""Where things live under the data dir, and the files other tools read while the platform runs
(`run/endpoints.json`, `run/pids.json`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from muster.launcher.secrets import write_private

DATA_DIR_ENV = "MUSTER_DATA_DIR"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "muster"


@dataclass(frozen=True)
class Layout:
    """Persistent data (postgres/, nats/jetstream/, secrets) survives runs; run/ is per run."""

    root: Path

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def nats_config(self) -> Path:
        return self.nats_dir / "nats.conf"

    @property
    def jetstream(self) -> Path:
        return self.nats_dir / "jetstream"

    @property
    def envoy_config(self) -> Path:
        return self.root / "envoy" / "envoy.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def token_key(self) -> Path:
        return self.root / "secrets" / "token.key"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def endpoints(self) -> Path:
        return self.run / "endpoints.json"

    @property
    def pids(self) -> Path:
        return self.run / "pids.json"

    @property
    def lock(self) -> Path:
        return self.run / "muster.lock"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def create(self) -> None:
        """A new root is private (0700); an existing one keeps its mode (PostgreSQL's user may need
        o+x on it to reach postgres/)."""
        if not self.root.exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o700)
        for path in (self.logs, self.run, self.nats_dir, self.envoy_config.parent):
            path.mkdir(parents=True, exist_ok=True)


class AlreadyRunning(RuntimeError):
    """Another `muster up` holds this data dir."""


class RunLock:
    """An flock on run/muster.lock: the kernel drops it when the holder dies, so it never goes stale."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(f"another muster up (pid {holder}) is running on {self.path.parent.parent}: "
                                 "stop it first or use another --data-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Atomic and private: readers never see half a file; endpoints.json carries a token."""
    write_private(path, json.dumps(content, indent=2).encode())


def remove_run_files(layout: Layout) -> None:
    for path in (layout.endpoints, layout.pids):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def summary(endpoints: dict[str, Any]) -> str:
    """What a person needs to start using the platform."""
    lines = ["Muster is up.", f"  REST (via Envoy):  {endpoints['rest']}"]
    lines += [f"  gRPC {name + ':':<13} {address}" for name, address in endpoints["grpc"].items()]
    lines += [
        f"  MQTT:              {endpoints['mqtt']}",
        f"  NATS:              {endpoints['nats']}",
        f"  PostgreSQL:        {endpoints['postgres']}",
        f"  Envoy admin:       {endpoints['envoy_admin']}",
        f"  Data dir:          {endpoints['data_dir']}",
        "",
        "Bootstrap platform-admin token (30 days; also in run/endpoints.json):",
        f"  {endpoints['admin_token']}",
        "",
        f"  curl -H 'Authorization: Bearer <token>' {endpoints['rest']}/v1/tenants",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)
