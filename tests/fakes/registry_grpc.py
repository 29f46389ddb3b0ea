"""A tiny in-memory registry behind a real gRPC server, for testing the operator CLI without a platform.

It implements the generated servicer base classes, keeps tenants, sites and devices in dicts, pages
by offset, and records every call with its metadata and remaining deadline. `fail_with` makes a
method answer with the exact rich status the real services send (built by the runtime's own
`status_for_error`), so the CLI's decoding is tested against the real encoding.

The server is synchronous (a thread pool), so a test can block in `CliRunner.invoke` while it serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from muster.registry.v1 import device_service_pb2 as dev
from muster.registry.v1 import device_service_pb2_grpc as dev_grpc
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import site_service_pb2 as site
from muster.registry.v1 import site_service_pb2_grpc as site_grpc
from muster.registry.v1 import tenant_service_pb2 as ten
from muster.registry.v1 import tenant_service_pb2_grpc as ten_grpc
from muster.registry.v1 import token_service_pb2 as tok
from muster.registry.v1 import token_service_pb2_grpc as tok_grpc
from muster.runtime.errors import MusterError, NotFound
from muster.runtime.interceptors import status_for_error


@dataclass(frozen=True)
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromSeconds(1_790_000_000)
    return stamp


class FakeRegistry(ten_grpc.TenantServiceServicer, site_grpc.SiteServiceServicer, dev_grpc.DeviceServiceServicer,
                   tok_grpc.TokenServiceServicer):
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.tenants: dict[str, pb.Tenant] = {}
        self.sites: dict[str, pb.Site] = {}
        self.devices: dict[str, pb.Device] = {}
        self.failures: dict[str, MusterError] = {}
        self.delay = 0.0
        self._lock = threading.Lock()
        self._serial = 0

    def fail_with(self, method: str, error: MusterError) -> None:
        self.failures[method] = error

    def requests(self, method: str) -> list[Any]:
        return [call.request for call in self.calls if call.method == method]

    def _enter(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        with self._lock:
            self.calls.append(Call(method, request, metadata, context.time_remaining()))
        if self.delay:
            time.sleep(self.delay)
        if method in self.failures:
            context.abort_with_status(status_for_error(self.failures[method], "req-1"))

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._serial += 1
            return f"{prefix}{self._serial:0{20 - len(prefix)}d}"

    @staticmethod
    def _page(items: list[Any], size: int, token: str) -> tuple[list[Any], str]:
        start, size = int(token or 0), size or 50
        rest = start + size
        return items[start:rest], str(rest) if rest < len(items) else ""

    @staticmethod
    def _stored(store: dict[str, Any], name: str, context: grpc.ServicerContext) -> Any:
        if name not in store:
            context.abort_with_status(status_for_error(NotFound(f"{name} not found"), "req-1"))
        return store[name]

    # TenantService

    def CreateTenant(self, request: ten.CreateTenantRequest, context: Any) -> pb.Tenant:
        self._enter("CreateTenant", request, context)
        tenant = pb.Tenant(name=f"tenants/{request.tenant_id}", display_name=request.tenant.display_name,
                           create_time=_now(), update_time=_now(), etag="e1")
        self.tenants[tenant.name] = tenant
        return tenant

    def GetTenant(self, request: ten.GetTenantRequest, context: Any) -> pb.Tenant:
        self._enter("GetTenant", request, context)
        tenant: pb.Tenant = self._stored(self.tenants, request.name, context)
        return tenant

    def ListTenants(self, request: ten.ListTenantsRequest, context: Any) -> ten.ListTenantsResponse:
        self._enter("ListTenants", request, context)
        items, token = self._page(list(self.tenants.values()), request.page_size, request.page_token)
        return ten.ListTenantsResponse(tenants=items, next_page_token=token)

    def UpdateTenant(self, request: ten.UpdateTenantRequest, context: Any) -> pb.Tenant:
        self._enter("UpdateTenant", request, context)
        return request.tenant

    def DeleteTenant(self, request: ten.DeleteTenantRequest, context: Any) -> Empty:
        self._enter("DeleteTenant", request, context)
        self._stored(self.tenants, request.name, context)
        del self.tenants[request.name]
        return Empty()

    # SiteService

    def CreateSite(self, request: site.CreateSiteRequest, context: Any) -> pb.Site:
        self._enter("CreateSite", request, context)
        created = pb.Site()
        created.CopyFrom(request.site)
        created.name = f"sites/{request.site_id or self._next_id('s')}"
        created.time_zone = created.time_zone or "UTC"
        created.create_time.CopyFrom(_now())
        created.etag = "e1"
        self.sites[created.name] = created
        return created

    def GetSite(self, request: site.GetSiteRequest, context: Any) -> pb.Site:
        self._enter("GetSite", request, context)
        found: pb.Site = self._stored(self.sites, request.name, context)
        return found

    def ListSites(self, request: site.ListSitesRequest, context: Any) -> site.ListSitesResponse:
        self._enter("ListSites", request, context)
        items, token = self._page(list(self.sites.values()), request.page_size, request.page_token)
        return site.ListSitesResponse(sites=items, next_page_token=token)

    def UpdateSite(self, request: site.UpdateSiteRequest, context: Any) -> pb.Site:
        self._enter("UpdateSite", request, context)
        stored: pb.Site = self._stored(self.sites, request.site.name, context)
        request.update_mask.MergeMessage(request.site, stored, replace_message_field=True,
                                         replace_repeated_field=True)  # maps replaced whole, like the service
        return stored

    def DeleteSite(self, request: site.DeleteSiteRequest, context: Any) -> Empty:
        self._enter("DeleteSite", request, context)
        self._stored(self.sites, request.name, context)
        del self.sites[request.name]
        return Empty()

    # DeviceService

    def CreateDevice(self, request: dev.CreateDeviceRequest, context: Any) -> pb.Device:
        self._enter("CreateDevice", request, context)
        created = pb.Device()
        created.CopyFrom(request.device)
        created.name = f"devices/{self._next_id('d')}"
        created.state = pb.DEVICE_STATE_PROVISIONED
        created.create_time.CopyFrom(_now())
        created.etag = "e1"
        self.devices[created.name] = created
        return created

    def GetDevice(self, request: dev.GetDeviceRequest, context: Any) -> pb.Device:
        self._enter("GetDevice", request, context)
        found: pb.Device = self._stored(self.devices, request.name, context)
        return found

    def ListDevices(self, request: dev.ListDevicesRequest, context: Any) -> dev.ListDevicesResponse:
        self._enter("ListDevices", request, context)
        items, token = self._page(list(self.devices.values()), request.page_size, request.page_token)
        return dev.ListDevicesResponse(devices=items, next_page_token=token)

    def UpdateDevice(self, request: dev.UpdateDeviceRequest, context: Any) -> pb.Device:
        self._enter("UpdateDevice", request, context)
        stored: pb.Device = self._stored(self.devices, request.device.name, context)
        request.update_mask.MergeMessage(request.device, stored, replace_message_field=True,
                                         replace_repeated_field=True)
        return stored

    def DeleteDevice(self, request: dev.DeleteDeviceRequest, context: Any) -> Empty:
        self._enter("DeleteDevice", request, context)
        self._stored(self.devices, request.name, context)
        del self.devices[request.name]
        return Empty()

    def _change_state(self, method: str, request: Any, context: Any, state: pb.DeviceState.ValueType) -> pb.Device:
        self._enter(method, request, context)
        stored: pb.Device = self._stored(self.devices, request.name, context)
        stored.state = state
        return stored

    def ActivateDevice(self, request: dev.ActivateDeviceRequest, context: Any) -> pb.Device:
        return self._change_state("ActivateDevice", request, context, pb.DEVICE_STATE_ACTIVE)

    def SuspendDevice(self, request: dev.SuspendDeviceRequest, context: Any) -> pb.Device:
        return self._change_state("SuspendDevice", request, context, pb.DEVICE_STATE_SUSPENDED)

    def RetireDevice(self, request: dev.RetireDeviceRequest, context: Any) -> pb.Device:
        return self._change_state("RetireDevice", request, context, pb.DEVICE_STATE_RETIRED)

    # TokenService

    def IssueOperatorToken(self, request: tok.IssueOperatorTokenRequest, context: Any) -> tok.OperatorToken:
        self._enter("IssueOperatorToken", request, context)
        return tok.OperatorToken(token=f"jwt-for-{request.subject}", expire_time=_now())


@contextmanager
def serve_fake_registry() -> Iterator[tuple[FakeRegistry, str]]:
    """A started server on a free loopback port: yields the fake and its address."""
    fake = FakeRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ten_grpc.add_TenantServiceServicer_to_server(fake, server)
    site_grpc.add_SiteServiceServicer_to_server(fake, server)
    dev_grpc.add_DeviceServiceServicer_to_server(fake, server)
    tok_grpc.add_TokenServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
