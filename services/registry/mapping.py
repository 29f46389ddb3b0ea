"""Domain objects to protobuf messages (for responses and event payloads)."""

from __future__ import annotations

from muster.registry.v1 import resources_pb2 as pb
from muster.runtime.timestamps import timestamp_of
from services.registry.domain import Device, Location, Site, Tenant, etag_of
from services.registry.transport_mapping import transports_to_proto


def location_to_proto(location: Location | None) -> pb.Location | None:
    if location is None:
        return None
    return pb.Location(latitude=location.latitude, longitude=location.longitude, altitude=location.altitude)


def location_from_proto(message: pb.Location, present: bool) -> Location | None:
    if not present:
        return None
    return Location(message.latitude, message.longitude, message.altitude)


def tenant_to_proto(tenant: Tenant) -> pb.Tenant:
    return pb.Tenant(name=tenant.name, display_name=tenant.display_name, create_time=timestamp_of(tenant.create_time),
                     update_time=timestamp_of(tenant.update_time), etag=etag_of(tenant.version))


def site_to_proto(site: Site) -> pb.Site:
    return pb.Site(name=site.name, display_name=site.display_name, address=site.address, time_zone=site.time_zone,
                   location=location_to_proto(site.location), labels=dict(site.labels),
                   create_time=timestamp_of(site.create_time), update_time=timestamp_of(site.update_time),
                   etag=etag_of(site.version))


def device_to_proto(device: Device) -> pb.Device:
    return pb.Device(name=device.name, display_name=device.display_name,
                     site=f"sites/{device.site_id}" if device.site_id else "", labels=dict(device.labels),
                     serial=device.serial, notes=device.notes, location=location_to_proto(device.location),
                     state=pb.DeviceState.ValueType(int(device.state)), create_time=timestamp_of(device.create_time),
                     update_time=timestamp_of(device.update_time), etag=etag_of(device.version),
                     template=f"templates/{device.template_id}" if device.template_id else "",
                     transports=transports_to_proto(device.transports))
