"""Shared fixtures. `platform`: one real Muster (PostgreSQL, NATS, services, Envoy) per test session,
started by the same launcher as `muster up` on a temp data dir with ephemeral ports.

MUSTER_TEST_SERVICES (same syntax as --services) picks what runs, e.g.
`MUSTER_TEST_SERVICES=registry=muster.launcher.stub_service` to test without the real registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from platform_fixture import RunningPlatform, scratch_dir, start_platform, stop_platform


@pytest.fixture(scope="session")
def platform() -> Iterator[RunningPlatform]:
    with scratch_dir() as root:
        running = start_platform(root / "data", services=os.environ.get("MUSTER_TEST_SERVICES"))
        yield running
        code = stop_platform(running)
        assert code == 0, f"muster up exited with {code}:\n{running.supervisor_output()}"
