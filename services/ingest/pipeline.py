"""A stream's batch handler: profiles from the projection, pure processing, one write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from services.ingest.consumer import Handled
from services.ingest.processing import BatchProcessor, Inbound
from services.ingest.profiles import ProfileCache

RowT = TypeVar("RowT")
RowContra = TypeVar("RowContra", contravariant=True)


class Store(Protocol[RowContra]):
    async def write(self, rows: Sequence[RowContra]) -> int: ...


class Pipeline(Generic[RowT]):
    def __init__(self, processor: BatchProcessor[RowT], profiles: ProfileCache, store: Store[RowT]) -> None:
        self._processor = processor
        self._profiles = profiles
        self._store = store

    async def __call__(self, batch: Sequence[Inbound]) -> Handled:
        profiles = await self._profiles.get_many({message.device_id for message in batch})
        outcome = self._processor.process(batch, profiles)
        new_rows = await self._store.write(outcome.rows)
        return Handled(outcome, new_rows)
