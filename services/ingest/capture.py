"""The streams capturing what ingest stores: telemetry and device logs, one work-queue stream each.

A message is kept until ingest acks it (after its rows are committed). Subjects and stream mechanics
live in `muster.runtime.device_topics`, shared with the other contexts that capture device traffic.
"""

from __future__ import annotations

from muster.runtime.device_topics import DAY_SECONDS, GIB, CaptureStream

TELEMETRY = CaptureStream("MUSTER_TELEMETRY", ("telemetry",), max_bytes=8 * GIB, max_age_seconds=7 * DAY_SECONDS)
LOGS = CaptureStream("MUSTER_DEVICE_LOGS", ("logs",), max_bytes=2 * GIB, max_age_seconds=7 * DAY_SECONDS)
STREAMS = (TELEMETRY, LOGS)
