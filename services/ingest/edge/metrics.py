"""Prometheus collectors of the device edge, on the process's one registry (served with the gRPC
server's metrics endpoint)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

CALLOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.callouts = Counter(
            "muster_edge_callouts", "Auth callouts answered, by result (allowed/refused) and reason.",
            ("result", "reason"), registry=registry)
        self.callout_duration = Histogram(
            "muster_edge_callout_duration_seconds",
            "Time from receiving an auth callout to publishing its answer.",
            buckets=CALLOUT_BUCKETS, registry=registry)
        self.batch_size = Histogram(
            "muster_edge_callout_batch_size", "Callouts decided together in one database transaction.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500), registry=registry)
        self.kicks = Counter(
            "muster_edge_kicks", "Connections cut, by outcome (kicked, not_found, server_gone).",
            ("outcome",), registry=registry)
        self.events = Counter(
            "muster_edge_events", "Registry events applied to the credentials projection, by type.",
            ("type",), registry=registry)
