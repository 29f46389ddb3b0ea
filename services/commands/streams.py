"""The capture stream of command replies: what devices publish on `commands/{command_id}/ack` and
`commands/{command_id}/result`.

A work-queue stream (commands is its only reader): a reply stays until the commands service has
applied it and acked, so a crash or restart of the service loses no reply. Replies are tiny and few
compared to telemetry; a day's backlog is plenty, since a command whose reply waits longer has
timed out by then anyway.
"""

from __future__ import annotations

from muster.runtime.device_topics import DAY_SECONDS, GIB, CaptureStream

ACK, RESULT = "ack", "result"

COMMAND_REPLIES = CaptureStream(
    "MUSTER_COMMAND_REPLIES", topics=(f"commands.*.{ACK}", f"commands.*.{RESULT}"),
    max_bytes=1 * GIB, max_age_seconds=DAY_SECONDS, max_msg_size=256 * 1024,
)
