"""The registry process: one bootstrap that wires settings, database, bus, handlers and the gRPC edge."""

from __future__ import annotations

import asyncio
from functools import partial

from muster.registry.v1 import (
    bulk_service_pb2_grpc,
    device_service_pb2_grpc,
    group_service_pb2_grpc,
    module_service_pb2_grpc,
    provisioning_service_pb2_grpc,
    sensor_service_pb2_grpc,
    site_service_pb2_grpc,
    template_service_pb2_grpc,
    tenant_service_pb2_grpc,
    token_service_pb2_grpc,
)
from muster.runtime import eventloop
from muster.runtime.auth import TokenCodec, derive_key
from muster.runtime.bus import EventConsumer, OutboxRelay, connect, ensure_events_stream
from muster.runtime.db import Database, create_engine
from muster.runtime.grpc_server import ServiceBinding, run_grpc_server
from muster.runtime.logging import configure_logging
from muster.runtime.pagination import PageTokens
from muster.runtime.scoped_reads import ScopedReader
from services.registry import telemetry_consumer
from services.registry.access import ACCESS_POLICY
from services.registry.bulk_handlers import BulkHandlers
from services.registry.bulk_servicer import DeviceBulkServicer
from services.registry.device_reads import SqlDeviceReads
from services.registry.group_handlers import GroupHandlers
from services.registry.group_servicer import GroupServicer
from services.registry.handlers import RegistryHandlers
from services.registry.module_handlers import ModuleHandlers
from services.registry.module_servicer import ModuleServicer
from services.registry.provisioning import SecretHasher
from services.registry.provisioning_handlers import MqttEndpoint, ProvisioningHandlers
from services.registry.provisioning_servicer import ProvisioningServicer
from services.registry.servicer import DeviceServicer, SiteServicer, TenantServicer, TokenServicer
from services.registry.settings import RegistrySettings
from services.registry.tables import infrastructure
from services.registry.template_handlers import TemplateHandlers
from services.registry.template_servicer import SensorServicer, TemplateServicer
from services.registry.unit_of_work import unit_of_work_factory


async def serve(settings: RegistrySettings) -> None:
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
    reader = await ScopedReader.connect(settings.database_url.get_secret_value(),
                                        pool_size=settings.database_read_pool_size)
    handlers = RegistryHandlers(uow, pages, tokens, reads=SqlDeviceReads(reader))
    template_handlers = TemplateHandlers(uow, pages)
    relay = OutboxRelay(db, infrastructure, js, wakeup=published)
    latest_telemetry = EventConsumer(js, db, infrastructure, durable=telemetry_consumer.DURABLE,
                                     filter_subjects=telemetry_consumer.FILTER_SUBJECTS,
                                     handler=telemetry_consumer.apply_event)
    provisioning = ProvisioningHandlers(uow, pages, SecretHasher(settings.device_secret_key_bytes()),
                                        MqttEndpoint(settings.mqtt_public_host, settings.mqtt_public_port))
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
        ServiceBinding("muster.registry.v1.GroupService",
                       partial(group_service_pb2_grpc.add_GroupServiceServicer_to_server,
                               GroupServicer(GroupHandlers(uow, pages)))),
        ServiceBinding("muster.registry.v1.ModuleService",
                       partial(module_service_pb2_grpc.add_ModuleServiceServicer_to_server,
                               ModuleServicer(ModuleHandlers(uow, pages)))),
        ServiceBinding("muster.registry.v1.DeviceBulkService",
                       partial(bulk_service_pb2_grpc.add_DeviceBulkServiceServicer_to_server,
                               DeviceBulkServicer(BulkHandlers(uow, pages)))),
        ServiceBinding("muster.registry.v1.ProvisioningService",
                       partial(provisioning_service_pb2_grpc.add_ProvisioningServiceServicer_to_server,
                               ProvisioningServicer(provisioning))),
    ]

    async def close() -> None:
        await nc.drain()
        await reader.close()
        await db.close()

    await run_grpc_server(settings, bindings, access_policy=ACCESS_POLICY, token_codec=tokens,
                          background=[relay.run, latest_telemetry.run], on_stop=[close])


def main() -> None:
    settings = RegistrySettings(service_name="registry")  # the rest from MUSTER_* env
    eventloop.run(serve(settings))


if __name__ == "__main__":
    main()
