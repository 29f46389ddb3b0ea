"""What the connectivity and health end-to-end tests share: the ConnectivityService reads for one device,
and waiting until its connectivity reaches a state (riding out a twin restart: UNAVAILABLE is retried)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from helpers import RPC_TIMEOUT, bearer

from muster.twin.v1 import connectivity_service_pb2 as pb
from muster.twin.v1 import connectivity_service_pb2_grpc as pb_grpc

from .twin_support import TwinDevice


async def connectivity(channel: grpc.aio.Channel, device: TwinDevice) -> pb.DeviceConnectivity:
    return await pb_grpc.ConnectivityServiceStub(channel).GetDeviceConnectivity(
        pb.GetDeviceConnectivityRequest(name=f"devices/{device.id}/connectivity"), metadata=bearer(device.viewer),
        timeout=RPC_TIMEOUT)


async def health(channel: grpc.aio.Channel, device: TwinDevice) -> pb.DeviceHealth:
    return await pb_grpc.ConnectivityServiceStub(channel).GetDeviceHealth(
        pb.GetDeviceHealthRequest(name=f"devices/{device.id}/health"), metadata=bearer(device.viewer),
        timeout=RPC_TIMEOUT)


async def until(channel: grpc.aio.Channel, device: TwinDevice, done: Callable[[pb.DeviceConnectivity], bool],
                timeout: float = 15.0) -> pb.DeviceConnectivity:
    deadline = time.monotonic() + timeout
    state: pb.DeviceConnectivity | None = None
    while True:
        try:
            state = await connectivity(channel, device)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        if state is not None and done(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"connectivity never reached the expected state; last: {state}")
        await asyncio.sleep(0.1)


async def log_of(channel: grpc.aio.Channel, device: TwinDevice, filter: str = "") -> list[pb.ConnectionEvent]:
    response = await pb_grpc.ConnectivityServiceStub(channel).ListConnectionEvents(
        pb.ListConnectionEventsRequest(parent=f"devices/{device.id}", filter=filter), metadata=bearer(device.viewer),
        timeout=RPC_TIMEOUT)
    return list(response.events)
