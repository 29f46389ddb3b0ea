"""A bare outbox relay process, so tests can SIGKILL it mid-flight: relay_worker.py SCHEMA DB_URL NATS_URL BATCH."""

from __future__ import annotations

import asyncio
import sys

from muster.runtime.bus import OutboxRelay, connect, ensure_events_stream
from muster.runtime.db import Database, create_engine
from muster.runtime.logging import configure_logging
from muster.runtime.outbox import OutboxTables


async def main(schema: str, db_url: str, nats_url: str, batch: int) -> None:
    configure_logging("relay-worker", "warning", "console")
    db = Database(create_engine(db_url, pool_size=2))
    nc = await connect(nats_url, name="relay-worker")
    js = nc.jetstream()
    await ensure_events_stream(js)
    relay = OutboxRelay(db, OutboxTables(schema), js, wakeup=asyncio.Event(), batch_size=batch, poll_interval=0.1)
    await relay.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
