"""What the REST (Envoy) end-to-end tests share: an HTTP client on the gateway (fixture `http`), the
bearer header, and the ErrorInfo reason of an error body. The gRPC channel and a fresh tenant with its
tokens come from `registry_grpc_support`.

Test modules import the fixtures under their own names, e.g.
`from .rest_support import http as http  # fixture`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from helpers import PlatformLike


@pytest.fixture(scope="module")
async def http(platform: PlatformLike) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.endpoints["rest"], timeout=15.0) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_reason(body: dict[str, Any]) -> str:
    """The google.rpc.ErrorInfo reason in a transcoded error body ("" if none)."""
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""
