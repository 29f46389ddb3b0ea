"""A bare grpc.aio echo service: the ceiling for a Python gRPC server on this machine.

One generic unary method, `/bench.Echo/Echo`, with identity (bytes) serializers, that answers every
request with the same fixed payload of `--size` bytes; no interceptors, no protobuf, no I/O. Served with
the platform's own server options (muster.runtime.grpc_server.SERVER_OPTIONS) so the comparison with a
real service differs only in what the service does per call.

Run: `python -m bench._echo --size 300` prints `PORT <n>` once listening on 127.0.0.1 and serves until
SIGTERM/SIGINT or until its stdin closes (so it never outlives the benchmark that started it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc

from muster.runtime.grpc_server import SERVER_OPTIONS

METHOD = "/bench.Echo/Echo"
SERVICE = "bench.Echo"


def build_server(payload: bytes) -> grpc.aio.Server:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return payload

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)})  # no (de)serializers: bytes in/out
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    return server


async def serve(size: int, host: str) -> None:
    server = build_server(b"\x00" * size)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    print(f"PORT {port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        while await reader.read(4096):
            pass
        stop.set()  # parent gone or done

    watcher = asyncio.create_task(watch_stdin())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await server.stop(grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, required=True, help="response size in bytes")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the echo service listens on loopback only")
    asyncio.run(serve(args.size, args.host))


if __name__ == "__main__":
    main()
