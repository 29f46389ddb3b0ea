"""Prometheus collectors of the ingest pipeline, on the server's registry (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "muster_ingest_messages", "Captured device messages handled, by stream and outcome "
            "(acked: after its rows committed, or refused; retried: delivered again later; provisional: "
            "stored before the registry projection knew the device, without template checks).",
            ("stream", "outcome"), registry=registry)
        self.rejections = Counter(
            "muster_ingest_rejections", "Refused input by reason (a message may have several).",
            ("stream", "reason"), registry=registry)
        self.rows = Counter(
            "muster_ingest_rows", "Rows written (new) and skipped as already stored (duplicate).",
            ("stream", "result"), registry=registry)
        self.batch_seconds = Histogram(
            "muster_ingest_batch_seconds", "Time to process, write and ack one batch.", ("stream",),
            buckets=BATCH_BUCKETS, registry=registry)
        self.lag_seconds = Histogram(
            "muster_ingest_lag_seconds", "From capture in JetStream to commit in PostgreSQL.", ("stream",),
            buckets=LAG_BUCKETS, registry=registry)
        self.write_failures = Counter(
            "muster_ingest_write_failures", "Batches whose write failed (their messages are redelivered).",
            ("stream",), registry=registry)
