"""Prometheus collectors of the ingest pipeline, on the server's registry (no process globals).
Messages, batches, lag and refusals per stream are the shared device inbox's
(`muster_device_inbox_*`); these count what only ingest knows."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.provisional = Counter(
            "muster_ingest_provisional_messages", "Messages stored before the registry projection knew their "
            "device, without template checks.", ("stream",), registry=registry)
        self.rejections = Counter(
            "muster_ingest_rejections", "Refused input by reason (a message may have several).",
            ("stream", "reason"), registry=registry)
        self.rows = Counter(
            "muster_ingest_rows", "Rows written (new) and skipped as already stored (duplicate).",
            ("stream", "result"), registry=registry)
