"""The twin context's capture stream: what devices send to their twin, kept until the twin acks it.

One work-queue stream (`MUSTER_TWIN_INBOX`) holds `twin/reported`, `twin/get` and `status`; each
topic has exactly one consumer (a work-queue stream allows no overlap between consumers' filters):
`twin-reports` reads twin/reported and twin/get, the connectivity slice reads status with its own.
"""

from __future__ import annotations

from muster.runtime.device_topics import GIB, CaptureStream, device_subject

REPORTED = "twin.reported"
GET = "twin.get"
STATUS = "status"

TWIN_INBOX = CaptureStream("MUSTER_TWIN_INBOX", (REPORTED, GET, STATUS), max_bytes=2 * GIB,
                           max_age_seconds=7 * 24 * 3600)

REPORTS_DURABLE = "twin-reports"
REPORT_SUBJECTS = (device_subject("*", REPORTED), device_subject("*", GET))
