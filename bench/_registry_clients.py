"""The Python load clients (grpcio and httpx). Module level, not closures: they are pickled into the load
processes (functools.partial of these), so each child imports this module."""

from __future__ import annotations

import contextlib
import random
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Sequence

import grpc
import httpx

from bench import _echo
from bench._load import Call
from bench._registry_config import LIST_FILTER, LIST_PAGE_SIZE, RPC_TIMEOUT, bearer
from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc


def _code(exc: grpc.aio.AioRpcError) -> str:
    return str(exc.code().name)


@contextlib.asynccontextmanager
async def echo_client(target: str, request: bytes) -> AsyncIterator[Call]:
    async with grpc.aio.insecure_channel(target) as channel:
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(_echo.METHOD)  # bytes in/out
        await method(request, timeout=RPC_TIMEOUT)  # connect before the clock starts

        async def call() -> str:
            try:
                await method(request, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return "OK"

        yield call


@contextlib.asynccontextmanager
async def get_device_client(target: str, token: str, ids: Sequence[str]) -> AsyncIterator[Call]:
    names = [f"devices/{i}" for i in ids]
    metadata = bearer(token)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = dev_grpc.DeviceServiceStub(channel)
        await stub.GetDevice(dev.GetDeviceRequest(name=names[0]), metadata=metadata, timeout=RPC_TIMEOUT)

        async def call() -> str:
            try:
                await stub.GetDevice(dev.GetDeviceRequest(name=random.choice(names)),
                                     metadata=metadata, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return "OK"

        yield call


@contextlib.asynccontextmanager
async def list_devices_client(target: str, token: str) -> AsyncIterator[Call]:
    metadata = bearer(token)
    request = dev.ListDevicesRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = dev_grpc.DeviceServiceStub(channel)
        await stub.ListDevices(request, metadata=metadata, timeout=RPC_TIMEOUT)

        async def call() -> str:
            try:
                await stub.ListDevices(request, metadata=metadata, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return _code(exc)
            return "OK"

        yield call


@contextlib.asynccontextmanager
async def httpx_client(base_url: str, token: str, paths: Sequence[str], connections: int) -> AsyncIterator[Call]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=RPC_TIMEOUT) as http:
        await http.get(paths[0])

        async def call() -> str:
            response = await http.get(random.choice(paths))
            return str(response.status_code)

        yield call


def rest_get_paths(ids: Iterable[str]) -> list[str]:
    return [f"/v1/devices/{i}" for i in ids]


def rest_list_path() -> str:
    return "/v1/devices?" + urllib.parse.urlencode({"page_size": LIST_PAGE_SIZE, "filter": LIST_FILTER},
                                                  quote_via=urllib.parse.quote)
