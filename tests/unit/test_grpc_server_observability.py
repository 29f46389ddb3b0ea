"""The shared gRPC edge's metrics, access log and JSON logging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.request

import pytest
import structlog

from muster.runtime.interceptors import REQUEST_ID_KEY
from muster.runtime.logging import configure_logging
from muster.runtime.metrics import GrpcMetrics, start_metrics_server

from .grpc_server_support import SERVICE, Echo, StringValue, auth
from .grpc_server_support import echo as echo  # fixture


async def test_metrics_count_calls_by_code(echo: Echo) -> None:
    def count(method: str, code: str) -> float:
        return echo.metrics.registry.get_sample_value(
            "muster_grpc_server_requests_total", {"service": SERVICE, "method": method, "code": code}) or 0

    ok, internal = count("Public", "OK"), count("Boom", "INTERNAL")
    await echo.unary("Public")(StringValue(value="x"), timeout=5)
    await echo.fail("Boom", auth())
    assert (count("Public", "OK"), count("Boom", "INTERNAL")) == (ok + 1, internal + 1)
    assert echo.metrics.registry.get_sample_value(
        "muster_grpc_server_request_duration_seconds_count", {"service": SERVICE, "method": "Public"})


async def test_access_log_line(echo: Echo) -> None:
    with structlog.testing.capture_logs() as logs:
        await echo.fail("Boom", (*auth(), (REQUEST_ID_KEY, "req-log")))
    rpc = [entry for entry in logs if entry["event"] == "rpc"]
    assert len(rpc) == 1
    assert rpc[0]["code"] == "INTERNAL" and rpc[0]["log_level"] == "warning"
    assert rpc[0]["duration_ms"] >= 0 and rpc[0]["peer"].startswith("ipv4:127.0.0.1")
    crash = [entry for entry in logs if entry["event"] == "rpc.unhandled_exception"]
    assert crash and isinstance(crash[0]["exc_info"], RuntimeError)


async def test_metrics_endpoint_serves_the_registry() -> None:
    metrics = GrpcMetrics()
    metrics.observe(f"/{SERVICE}/Public", "OK", 0.01)
    server = start_metrics_server("127.0.0.1:0", metrics.registry)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        await asyncio.to_thread(server.close)
    assert f'muster_grpc_server_requests_total{{code="OK",method="Public",service="{SERVICE}"}} 1.0' in body


def test_configure_logging_renders_json_with_context(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        configure_logging("registry", "info", "json")
        configure_logging("registry", "info", "json")  # idempotent: still one line per record
        with structlog.contextvars.bound_contextvars(request_id="r1"):
            structlog.stdlib.get_logger("t").info("hello", n=1)
            logging.getLogger("grpc.test").warning("from stdlib %s", "grpc")
            structlog.stdlib.get_logger("t").debug("hidden")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)
        structlog.reset_defaults()
    assert [line["event"] for line in lines] == ["hello", "from stdlib grpc"]
    assert all(line["service"] == "registry" and line["request_id"] == "r1" for line in lines)
    assert lines[0]["level"] == "info" and lines[1]["level"] == "warning" and "timestamp" in lines[0]
    with contextlib.suppress(ValueError), pytest.raises(ValueError):
        configure_logging("registry", "loud", "json")
