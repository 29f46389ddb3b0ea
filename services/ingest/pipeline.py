"""A stream's batch handler: profiles from the projection, pure processing, one write, and ingest's
own counts of what happened (the inbox counts messages, batches and refusals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from muster.runtime.device_inbox import InboxResult
from services.ingest.metrics import IngestMetrics
from services.ingest.processing import BatchProcessor, Inbound
from services.ingest.profiles import ProfileCache

RowT = TypeVar("RowT")
RowContra = TypeVar("RowContra", contravariant=True)


class Store(Protocol[RowContra]):
    async def write(self, rows: Sequence[RowContra]) -> int: ...


class Pipeline(Generic[RowT]):
    def __init__(self, stream: str, processor: BatchProcessor[RowT], profiles: ProfileCache, store: Store[RowT],
                 metrics: IngestMetrics) -> None:
        self._stream = stream
        self._processor = processor
        self._profiles = profiles
        self._store = store
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Inbound]) -> InboxResult:
        profiles = await self._profiles.get_many({message.device_id for message in batch})
        outcome = self._processor.process(batch, profiles)
        new_rows = await self._store.write(outcome.rows)
        metrics, stream = self._metrics, self._stream
        if outcome.provisional:
            metrics.provisional.labels(stream).inc(outcome.provisional)
        for reason, count in outcome.rejected.items():
            metrics.rejections.labels(stream, reason).inc(count)
        metrics.rows.labels(stream, "new").inc(new_rows)
        metrics.rows.labels(stream, "duplicate").inc(len(outcome.rows) - new_rows)
        return InboxResult(errors=outcome.errors, retry=outcome.retry)
