"""Cutting live connections: `$SYS.REQ.SERVER.<server id>.KICK` with the connection id, sent as a
system-account user (the only account allowed to ask a server to drop a client)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from services.ingest.edge.metrics import EdgeMetrics
from services.ingest.edge.repository import Connection

log = structlog.get_logger(__name__)

KICK_TIMEOUT_SECONDS = 2.0


def kick_subject(server_id: str) -> str:
    return f"$SYS.REQ.SERVER.{server_id}.KICK"


class Kicker:
    """Kicks connections; a server that no longer answers (restarted, gone) has no such connection.
    Other failures (our own NATS connection is down) raise, so the caller retries later."""

    def __init__(self, system_nc: NATS, metrics: EdgeMetrics) -> None:
        self._nc = system_nc
        self._metrics = metrics

    async def kick_all(self, connections: Sequence[Connection], reason: str) -> None:
        for connection in connections:
            await self.kick(connection, reason)

    async def kick(self, connection: Connection, reason: str) -> str:
        """Returns the outcome: "kicked", "not_found" (already gone) or "server_gone"."""
        payload = orjson.dumps({"cid": connection.client_id})
        try:
            reply = await self._nc.request(kick_subject(connection.server_id), payload, timeout=KICK_TIMEOUT_SECONDS)
        except (NoRespondersError, NatsTimeoutError):
            outcome = "server_gone"
        else:
            body = orjson.loads(reply.data) if reply.data else {}
            outcome = "not_found" if isinstance(body, dict) and body.get("error") else "kicked"
        self._metrics.kicks.labels(outcome=outcome).inc()
        log.info("device_kicked", device=connection.device_id, tenant=connection.tenant_id,
                 server=connection.server_id, cid=connection.client_id, outcome=outcome, reason=reason)
        return outcome
