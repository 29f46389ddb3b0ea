"""Answers NATS's auth callout (`$SYS.REQ.USER.AUTH`) in a queue group shared by every replica.

Requests are decided in batches: whatever arrived while the previous batch was in the database is
looked up together (one transaction: lock the device rows, record the allowed connections, commit),
then each request gets its signed answer. Under a reconnect storm that is a few statements per
hundreds of connects; when idle, a batch is one request and answers in about a millisecond.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from muster.runtime.db import Database, Scope
from muster.runtime.secrets import device_secret_hash
from services.ingest.edge import repository as repo
from services.ingest.edge.authorization import (
    AuthRequest,
    BadRequest,
    Decision,
    Reason,
    decide,
    expiry,
    parse_request,
    plausible_device_id,
    response_claims,
    user_claims,
)
from services.ingest.edge.metrics import EdgeMetrics
from services.ingest.edge.nats_jwt import JwtError, Signer, decode_claims

log = structlog.get_logger(__name__)

CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
QUEUE_GROUP = "muster-edge"


@dataclass(frozen=True)
class ResponderConfig:
    device_account: str
    jwt_ttl_seconds: int
    max_batch: int = 500
    max_concurrent_batches: int = 4
    stale_after_seconds: float = 4.5  # a little under the server's auth timeout (5 s)


@dataclass
class _Pending:
    msg: Msg
    received: float
    request: AuthRequest | None = None
    presented_hash: str = ""


class CalloutResponder:
    def __init__(self, nc: NATS, db: Database, signer: Signer, secret_key: bytes, config: ResponderConfig,
                 metrics: EdgeMetrics) -> None:
        self._nc = nc
        self._db = db
        self._signer = signer
        self._key = secret_key
        self._config = config
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._slots = asyncio.Semaphore(config.max_concurrent_batches)
        self._sub: Subscription | None = None

    async def subscribe(self) -> None:
        """Join the queue group (before the process reports healthy)."""
        self._sub = await self._nc.subscribe(CALLOUT_SUBJECT, queue=QUEUE_GROUP, cb=self._enqueue,
                                             pending_msgs_limit=100_000)
        await self._nc.flush()

    async def _enqueue(self, msg: Msg) -> None:
        self._queue.put_nowait(_Pending(msg, time.perf_counter()))

    async def run(self) -> None:
        """Take what is queued as one batch; a few batches may be in the database at once."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self._config.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._slots.acquire()
                task = asyncio.create_task(self._answer_batch(batch))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            if self._sub is not None:
                await self._sub.unsubscribe()

    async def _answer_batch(self, queued: Sequence[_Pending]) -> None:
        try:
            # Under overload, a request that waited past the server's auth timeout has been refused
            # already: skip it, so the work goes to connects that can still succeed (no collapse).
            oldest = time.perf_counter() - self._config.stale_after_seconds
            batch = [item for item in queued if item.received >= oldest]
            if len(batch) < len(queued):
                self._metrics.callouts.labels(result="dropped", reason="stale").inc(len(queued) - len(batch))
            if not batch:
                return
            self._metrics.batch_size.observe(len(batch))
            now = datetime.now(UTC)
            for item in batch:
                self._parse(item)
            decisions = await self._decide(batch, now)
            for item in batch:
                await self._answer(item, decisions.get(id(item), Decision(Reason.BAD_REQUEST)), now)
        except Exception:
            # no answer: the server refuses these connects after its auth timeout (never lets them in)
            log.exception("callout_batch_failed", size=len(queued))
        finally:
            self._slots.release()

    def _parse(self, item: _Pending) -> None:
        try:
            item.request = parse_request(decode_claims(item.msg.data.decode()))
        except (JwtError, BadRequest, UnicodeDecodeError, ValueError) as exc:
            log.warning("callout_bad_request", error=str(exc))
            return
        if item.request.password:
            item.presented_hash = device_secret_hash(self._key, item.request.password)

    async def _decide(self, batch: Sequence[_Pending], now: datetime) -> dict[int, Decision]:
        """Look the devices up (rows locked), decide, record the allowed connections; one transaction."""
        wanted = [p for p in batch if p.request is not None and plausible_device_id(p.request.device_id)]
        decisions: dict[int, Decision] = {id(p): Decision(Reason.UNKNOWN_DEVICE)
                                          for p in batch if p.request is not None}
        if not wanted:
            return decisions
        async with self._db.transaction(Scope.platform_wide()) as conn:
            devices = await repo.lock_devices(conn, [p.request.device_id for p in wanted if p.request])
            allowed: list[repo.Connection] = []
            for item in wanted:
                assert item.request is not None
                device = devices.get(item.request.device_id)
                decision = decide(item.request, device, item.presented_hash, now)
                decisions[id(item)] = decision
                if decision.allowed and device is not None:
                    ends = expiry(now, self._config.jwt_ttl_seconds, decision.secret_expires)
                    allowed.append(repo.Connection(item.request.server_id, item.request.client_id,
                                                   device.device_id, device.tenant_id, now,
                                                   datetime.fromtimestamp(ends, UTC)))
            await repo.record_connections(conn, allowed)
        return decisions

    async def _answer(self, item: _Pending, decision: Decision, now: datetime) -> None:
        request = item.request
        if request is None:
            return  # not a callout request we can address an answer to
        issuer = self._signer.public_key
        if decision.allowed:
            ends = expiry(now, self._config.jwt_ttl_seconds, decision.secret_expires)
            user_jwt = self._signer.encode(user_claims(request, issuer=issuer, account=self._config.device_account,
                                                       now=now, expires=ends))
            claims = response_claims(request, issuer=issuer, now=now, user_jwt=user_jwt)
        else:
            claims = response_claims(request, issuer=issuer, now=now, error=decision.reason.value)
            log.info("device_refused", device=request.device_id[:128], reason=decision.reason.value,
                     server=request.server_id, cid=request.client_id)
        await item.msg.respond(self._signer.encode(claims).encode())
        self._metrics.callouts.labels(result="allowed" if decision.allowed else "refused",
                                      reason=decision.reason.value).inc()
        self._metrics.callout_duration.observe(time.perf_counter() - item.received)
