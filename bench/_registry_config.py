"""Settings every part of bench/registry.py shares: the ListDevices request, the per-request timeout,
progress logging, and the guard that keeps all traffic on 127.0.0.1."""

from __future__ import annotations

import sys
import urllib.parse

LIST_FILTER = 'labels.floor = "3"'
LIST_PAGE_SIZE = 50
RPC_TIMEOUT = 10.0  # per request, every client


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def loopback(address: str) -> str:
    """host:port or URL on 127.0.0.1 only: this benchmark must not send traffic anywhere else."""
    host = urllib.parse.urlsplit(address if "//" in address else f"//{address}").hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing to benchmark {address!r}: only 127.0.0.1 is allowed")
    return address


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
