"""Prometheus metrics for the gRPC edge, on a registry owned by the server (no process globals), so
tests and several servers in one process never collide on metric names."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""RPC latencies: from a cached read (~1 ms) to the default deadline and a little past it."""


class GrpcMetrics:
    """Request count and latency per gRPC method, labelled like the usual grpc_server_* metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "muster_grpc_server_requests",
            "RPCs completed by the server, by final status code.",
            ("service", "method", "code"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "muster_grpc_server_request_duration_seconds",
            "Time from the interceptor receiving an RPC to its final status.",
            ("service", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # labels() costs more than the increment itself; methods x codes is a small, fixed set.
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe(self, full_method: str, code: str, seconds: float) -> None:
        """Record one finished RPC; `full_method` is "/pkg.Service/Method", `code` e.g. "NOT_FOUND"."""
        children = self._children.get((full_method, code))
        if children is None:
            service, method = split_method(full_method)
            children = self._children[(full_method, code)] = (
                self.requests.labels(service=service, method=method, code=code),
                self.duration.labels(service=service, method=method))
        children[0].inc()
        children[1].observe(seconds)


def split_method(full_method: str) -> tuple[str, str]:
    """"/muster.registry.v1.DeviceService/GetDevice" -> ("muster.registry.v1.DeviceService", "GetDevice")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def split_host_port(address: str) -> tuple[str, int]:
    """"host:port", "[::1]:port" or ":port" (all interfaces) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":port" explicitly asks for all interfaces
    return host, int(port)


@dataclass
class MetricsServer:
    """Handle on the /metrics HTTP server thread; `port` is the bound one (useful with port 0)."""

    host: str
    port: int
    _httpd: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the socket (blocks briefly while the serve loop exits)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve `registry` in the Prometheus text format on http://address/ (any path) in a daemon thread."""
    host, port = split_host_port(address)
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host=host, port=int(httpd.server_address[1]), _httpd=httpd, _thread=thread)
