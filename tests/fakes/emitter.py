"""The event side of an in-memory unit of work: events emitted in it, kept only if it commits."""

from __future__ import annotations

from types import TracebackType

from google.protobuf.message import Message

from muster.events.v1.event_pb2 import Event
from muster.runtime.db import Scope
from muster.runtime.events import new_event


class BufferedEmitter:
    """`emit` as the real unit of work does it (the scope's tenant unless given); `pending` is what the
    subclass's `commit` hands to its store. Leaving the unit of work drops what was not committed."""

    def __init__(self, source: str, scope: Scope) -> None:
        self._source = source
        self.scope = scope
        self.pending: list[Event] = []

    def emit(self, payload: Message, *, subject: str, tenant: str | None = None) -> Event:
        event = new_event(payload, source=self._source, tenant=tenant if tenant is not None else self.scope.tenant,
                          subject=subject)
        self.pending.append(event)
        return event

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.pending = []
