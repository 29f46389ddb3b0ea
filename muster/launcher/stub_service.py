"""A stand-in service process for launcher tests, or to run the platform before a service exists:
`MUSTER_SERVICES=registry=muster.launcher.stub_service muster up`.

It reads the same MUSTER_* environment a real service does, reports SERVING on the standard gRPC
health check, and answers every other method with UNIMPLEMENTED naming the method it received and
whether an `authorization` header came with it (so tests can see Envoy's routing end to end).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class _AnyMethod(grpc.GenericRpcHandler):
    def __init__(self, name: str) -> None:
        self._name = name

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        auth = "present" if "authorization" in metadata else "absent"

        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                f"stub {self._name}: {method} authorization={auth}")
            return b""  # pragma: no cover - abort raises

        return grpc.unary_unary_rpc_method_handler(unary)


async def serve() -> None:
    name = os.environ.get("MUSTER_SERVICE_NAME", "stub")
    address = os.environ.get("MUSTER_GRPC_ADDRESS", "127.0.0.1:50051")
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((_AnyMethod(name),))
    server.add_insecure_port(address)
    await server.start()
    print(f'{{"event": "stub_serving", "service": "{name}", "address": "{address}"}}', flush=True)  # noqa: T201
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await server.stop(grace=2)


def main() -> int:
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
