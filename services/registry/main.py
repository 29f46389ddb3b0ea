"""The registry process: one bootstrap that wires settings, database, bus, handlers and the gRPC edge."""

from __future__ import annotations

import asyncio
import hashlib
from functools import partial

from muster.registry.v1 import (
    device_service_pb2_grpc,
    module_service_pb2_grpc,
    sensor_service_pb2_grpc,
    site_service_pb2_grpc,
    template_service_pb2_grpc,
    tenant_service_pb2_grpc,
    token_service_pb2_grpc,
)
from muster.runtime.auth import TokenCodec
from muster.runtime.bus import OutboxRelay, connect, ensure_events_stream
from muster.runtime.config import ServiceSettings
from muster.runtime.db import Database, create_engine
from muster.runtime.grpc_server import ServiceBinding, run_grpc_server
from muster.runtime.logging import configure_logging
from muster.runtime.pagination import PageTokens
from services.registry.access import ACCESS_POLICY
from services.registry.handlers import RegistryHandlers
from services.registry.module_handlers import ModuleHandlers
from services.registry.module_servicer import ModuleServicer
from services.registry.servicer import DeviceServicer, SiteServicer, TenantServicer, TokenServicer
from services.registry.tables import infrastructure
from services.registry.template_handlers import TemplateHandlers
from services.registry.template_servicer import SensorServicer, TemplateServicer
from services.registry.unit_of_work import unit_of_work_factory


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per purpose from the deployment's one secret."""
    return hashlib.sha256(purpose.encode() + b"\x00" + secret).digest()


async def serve(settings: ServiceSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    secret = settings.token_secret()
    tokens = TokenCodec(secret)
    db = Database(create_engine(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size))
    nc = await connect(settings.nats_url.get_secret_value(), name=settings.service_name)
    js = nc.jetstream()
    await ensure_events_stream(js)
    published = asyncio.Event()
    uow = unit_of_work_factory(db, published)
    pages = PageTokens(derive_key(secret, "page-tokens"))
    handlers = RegistryHandlers(uow, pages, tokens)
    template_handlers = TemplateHandlers(uow, pages)
    relay = OutboxRelay(db, infrastructure, js, wakeup=published)
    bindings = [
        ServiceBinding("muster.registry.v1.TenantService",
                       partial(tenant_service_pb2_grpc.add_TenantServiceServicer_to_server, TenantServicer(handlers))),
        ServiceBinding("muster.registry.v1.SiteService",
                       partial(site_service_pb2_grpc.add_SiteServiceServicer_to_server, SiteServicer(handlers))),
        ServiceBinding("muster.registry.v1.DeviceService",
                       partial(device_service_pb2_grpc.add_DeviceServiceServicer_to_server, DeviceServicer(handlers))),
        ServiceBinding("muster.registry.v1.TokenService",
                       partial(token_service_pb2_grpc.add_TokenServiceServicer_to_server, TokenServicer(handlers))),
        ServiceBinding("muster.registry.v1.TemplateService",
                       partial(template_service_pb2_grpc.add_TemplateServiceServicer_to_server,
                               TemplateServicer(template_handlers))),
        ServiceBinding("muster.registry.v1.SensorService",
                       partial(sensor_service_pb2_grpc.add_SensorServiceServicer_to_server,
                               SensorServicer(template_handlers))),
        ServiceBinding("muster.registry.v1.ModuleService",
                       partial(module_service_pb2_grpc.add_ModuleServiceServicer_to_server,
                               ModuleServicer(ModuleHandlers(uow, pages)))),
    ]

    async def close() -> None:
        await nc.drain()
        await db.close()

    await run_grpc_server(settings, bindings, access_policy=ACCESS_POLICY, token_codec=tokens,
                          background=[relay.run], on_stop=[close])


def main() -> None:
    settings = ServiceSettings(service_name="registry")  # the rest from MUSTER_* env
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
