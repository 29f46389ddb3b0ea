"""The whole local platform in one supervising process: PostgreSQL and NATS, migrations, every
service, then Envoy; stopped in the reverse order so nothing is cut off mid-request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from muster.launcher import envoy, migrate, nats, postgres
from muster.launcher.layout import Layout, RunLock, remove_run_files, write_json
from muster.launcher.ports import PortOverrides, PortPlan, ensure_free, plan_ports
from muster.launcher.process import Child, ChildSpec, spawn
from muster.launcher.secrets import PlatformSecrets, load_or_create_secrets, load_or_create_token_key
from muster.launcher.services import SERVICES, ServiceSpec
from muster.launcher.supervisor import ServiceRunner
from muster.runtime.auth import Role, TokenCodec

log = structlog.get_logger("muster.launcher")

ADMIN_TOKEN_TTL = timedelta(days=30)


@dataclass(frozen=True)
class LaunchOptions:
    data_dir: Path
    services: tuple[ServiceSpec, ...] = SERVICES
    ports: PortOverrides = field(default_factory=PortOverrides)
    ephemeral_ports: bool = False
    cors_origins: tuple[str, ...] = envoy.DEFAULT_CORS_ORIGINS
    service_log_level: str = "info"
    service_start_timeout: float = 60.0
    infra_start_timeout: float = 60.0
    migration_timeout: float = 300.0


class LaunchError(RuntimeError):
    """Startup failed; the message says which part and why."""


async def together(*steps: Coroutine[Any, Any, None]) -> None:
    """Run steps concurrently; the first failure cancels the others and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


class Platform:
    """Start with `start()`, stop with `stop()` (safe after a partial start), or `run()` both
    around a wait for SIGINT/SIGTERM."""

    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.layout = Layout(options.data_dir.expanduser().resolve())
        self.ports: PortPlan | None = None
        self.endpoints: dict[str, Any] = {}
        self._lock = RunLock(self.layout.lock)
        self._secrets: PlatformSecrets | None = None
        self._pg_paths: postgres.PostgresPaths | None = None
        self._infra: dict[str, Child] = {}
        self._runners: dict[str, ServiceRunner] = {}
        self._infra_exit = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> dict[str, Any]:
        started = time.monotonic()
        opts, layout = self.options, self.layout
        layout.create()
        self._lock.acquire()
        names = [spec.name for spec in opts.services]
        contexts = sorted({*names, *(spec.schema for spec in opts.services)})
        instances = [instance for spec in opts.services for instance in spec.instances]
        secrets = self._secrets = load_or_create_secrets(layout.secrets_file, contexts)
        token_key = load_or_create_token_key(layout.token_key)
        ports = self.ports = plan_ports(instances, opts.ports, ephemeral=opts.ephemeral_ports)
        ensure_free(ports)

        pg_paths = self._pg_paths = postgres.PostgresPaths(
            pgdata=layout.postgres, socket_dir=postgres.socket_dir_for(layout.run),
            log_path=layout.log("postgres"))
        nats_ports = nats.NatsPorts(client=ports.nats, mqtt=ports.mqtt, monitor=ports.nats_monitor)
        nats.write_config(layout.nats_config,
                          nats.build_config(layout.jetstream, nats_ports, secrets, opts.services))
        await postgres.prepare(pg_paths, secrets.postgres_superuser)
        pg = await self._spawn_infra(postgres.child_spec(pg_paths, ports.postgres))
        bus = await self._spawn_infra(nats.child_spec(layout.nats_config, layout.log("nats")))
        await together(self._database_ready(pg),
                       self._ready("nats", bus, nats.wait_ready(nats_ports, self._exit_future(bus))))

        for spec in opts.services:
            for instance in spec.instances:
                self._runners[instance] = ServiceRunner(
                    instance, self._service_child(spec, instance), f"127.0.0.1:{ports.grpc[instance]}",
                    on_change=self._write_pids)
        await together(*(runner.start(opts.service_start_timeout) for runner in self._runners.values()))

        upstreams = [envoy.Upstream(spec.name, ports.grpc[spec.name], spec.grpc_package_prefix,
                                    spec.grpc_services, spec.streaming_paths)
                     for spec in opts.services if spec.grpc_services]
        write_json(layout.envoy_config, envoy.build_config(
            rest_port=ports.rest, admin_port=ports.envoy_admin, upstreams=upstreams,
            descriptor=envoy.descriptor_path(), cors_origins=opts.cors_origins))
        gateway = await self._spawn_infra(envoy.child_spec(layout.envoy_config, layout.log("envoy")))
        await self._ready("envoy", gateway, envoy.wait_ready(ports.envoy_admin, self._exit_future(gateway)))

        for name, child in self._infra.items():
            self._watchers.append(asyncio.create_task(self._watch_infra(name, child)))
        token, _ = TokenCodec(token_key).issue(subject="bootstrap-admin", role=Role.PLATFORM_ADMIN,
                                               tenant=None, ttl=ADMIN_TOKEN_TTL)
        self.endpoints = self._endpoints(ports, token)
        self._write_pids()
        write_json(layout.endpoints, self.endpoints)
        log.info("platform_ready", seconds=round(time.monotonic() - started, 2), data_dir=str(layout.root))
        return self.endpoints

    async def _database_ready(self, pg: Child) -> None:
        """Server up, roles and database in place, every service's migrations applied."""
        assert self.ports is not None and self._secrets is not None
        opts, port, secrets = self.options, self.ports.postgres, self._secrets
        await self._ready("postgres", pg, postgres.wait_ready(port, secrets.postgres_superuser,
                                                              self._exit_future(pg)))
        await postgres.bootstrap(port, secrets, opts.services)
        owner_url = postgres.owner_url(port, secrets)
        try:
            async with asyncio.timeout(opts.migration_timeout):
                by_schema = {spec.schema: spec for spec in opts.services}
                await together(*(migrate.upgrade(spec, owner_url=owner_url,
                                                 log_path=self.layout.log(f"migrations-{schema}"))
                                 for schema, spec in by_schema.items()))
        except TimeoutError:
            raise LaunchError(f"migrations did not finish within {opts.migration_timeout:.0f}s") from None
        except migrate.MigrationError as exc:
            raise LaunchError(str(exc)) from exc

    def _service_child(self, spec: ServiceSpec, instance: str) -> ChildSpec:
        assert self.ports is not None and self._secrets is not None
        ports, secrets = self.ports, self._secrets
        env = {
            **os.environ,
            "MUSTER_SERVICE_NAME": spec.name,
            "MUSTER_GRPC_ADDRESS": f"127.0.0.1:{ports.grpc[instance]}",
            "MUSTER_METRICS_ADDRESS": f"127.0.0.1:{ports.metrics[instance]}",
            "MUSTER_DATABASE_URL": postgres.service_url(ports.postgres, secrets, spec),
            "MUSTER_NATS_URL": nats.service_url(ports.nats, secrets, spec),
            "MUSTER_TOKEN_SECRET_FILE": str(self.layout.token_key),
            "MUSTER_DEVICE_SECRET_KEY": secrets.device_secret_key,
            "MUSTER_MQTT_PUBLIC_HOST": "127.0.0.1",
            "MUSTER_MQTT_PUBLIC_PORT": str(ports.mqtt),
            "MUSTER_LOG_FORMAT": "json",
            "MUSTER_LOG_LEVEL": self.options.service_log_level,
            "PYTHONUNBUFFERED": "1",
            **(nats.callout_env(ports.nats, secrets) if spec.auth_callout else {}),
        }
        if spec.device_publisher:
            env["MUSTER_DEVICE_MQTT_URL"] = nats.device_mqtt_url(ports.mqtt, secrets, spec)
        if spec.system_events:
            env["MUSTER_SYSTEM_NATS_URL"] = nats.system_url(ports.nats, secrets)
        return ChildSpec(name=instance, argv=[sys.executable, "-m", spec.main_module],
                         log_path=self.layout.log(instance), env=env, grace_seconds=15.0)

    def _endpoints(self, ports: PortPlan, token: str) -> dict[str, Any]:
        return {
            "rest": f"http://127.0.0.1:{ports.rest}",
            "grpc": {name: f"127.0.0.1:{port}" for name, port in ports.grpc.items()},
            "mqtt": f"127.0.0.1:{ports.mqtt}",
            "nats": f"nats://127.0.0.1:{ports.nats}",
            "nats_monitor": f"http://127.0.0.1:{ports.nats_monitor}",
            "postgres": f"127.0.0.1:{ports.postgres}",
            "metrics": {name: f"127.0.0.1:{port}" for name, port in ports.metrics.items()},
            "envoy_admin": f"http://127.0.0.1:{ports.envoy_admin}",
            "admin_token": token,
            "data_dir": str(self.layout.root),
            "pids_file": str(self.layout.pids),
        }

    def pids(self) -> dict[str, Any]:
        return {
            "supervisor": os.getpid(),
            **{name: child.pid for name, child in self._infra.items()},
            "services": {name: runner.pid for name, runner in self._runners.items()},
        }

    def _write_pids(self) -> None:
        write_json(self.layout.pids, self.pids())

    async def _spawn_infra(self, spec: ChildSpec) -> Child:
        child = self._infra[spec.name] = await spawn(spec)
        return child

    @staticmethod
    def _exit_future(child: Child) -> asyncio.Future[int]:
        return asyncio.ensure_future(child.process.wait())

    async def _ready(self, name: str, child: Child, waiting: Coroutine[Any, Any, None]) -> None:
        timeout = self.options.infra_start_timeout
        try:
            async with asyncio.timeout(timeout):
                await waiting
        except TimeoutError:
            raise LaunchError(f"{name} was not ready within {timeout:.0f}s\nlast lines of "
                              f"{child.spec.log_path}:\n{child.log_tail()}") from None
        except (RuntimeError, OSError) as exc:
            raise LaunchError(f"{name} did not start: {exc}\nlast lines of {child.spec.log_path}:\n"
                              f"{child.log_tail()}") from exc
        log.info(f"{name}_ready", pid=child.pid)

    async def _watch_infra(self, name: str, child: Child) -> None:
        code = await child.process.wait()
        log.error("infrastructure_exited", name=name, exit_code=code, log=str(child.spec.log_path),
                  tail=child.log_tail(10))
        self._infra_exit.set()

    async def stop(self) -> None:
        """Envoy, then services, then NATS, then PostgreSQL; then the run files and the lock."""
        if not self._lock.held:
            return  # never started (e.g. another run holds the data dir): touch nothing of theirs
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if "envoy" in self._infra:
            await self._stop_infra("envoy")
        await asyncio.gather(*(runner.stop() for runner in self._runners.values()), return_exceptions=True)
        for name in ("nats", "postgres"):
            if name in self._infra:
                await self._stop_infra(name)
        if self._pg_paths is not None:
            postgres.cleanup_socket_dir(self._pg_paths, self.layout.run)
        remove_run_files(self.layout)
        self._lock.release()
        log.info("platform_stopped")

    async def _stop_infra(self, name: str) -> None:
        child = self._infra[name]
        code = await child.stop()
        log.info(f"{name}_stopped", exit_code=code)

    async def run(self, on_ready: Callable[[dict[str, Any]], None] = lambda _: None) -> int:
        """Until SIGINT/SIGTERM (exit 0) or an infrastructure process dies (exit 1)."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_requested.set)
        starting = asyncio.create_task(self.start())
        stopping = asyncio.create_task(stop_requested.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                log.info("platform_start_interrupted")
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                return 130
            on_ready(starting.result())
            crashed = asyncio.create_task(self._infra_exit.wait())
            await asyncio.wait({stopping, crashed}, return_when=asyncio.FIRST_COMPLETED)
            crashed.cancel()
            return 1 if self._infra_exit.is_set() else 0
        finally:
            stopping.cancel()
            # handlers stay installed while stopping: a second Ctrl-C must not cut the ordered stop short
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.stop())
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
