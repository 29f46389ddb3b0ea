"""Proto types as the proto3 JSON mapping (and so the Envoy gateway) writes them: the name shown in the
reference and the OpenAPI schema of every scalar and well-known type."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FieldDescriptorProto

SCALARS: dict[int, tuple[str, dict[str, Any]]] = {
    FDP.TYPE_DOUBLE: ("double", {"type": "number", "format": "double"}),
    FDP.TYPE_FLOAT: ("float", {"type": "number", "format": "float"}),
    FDP.TYPE_INT64: ("int64", {"type": "string", "format": "int64"}),
    FDP.TYPE_UINT64: ("uint64", {"type": "string", "format": "uint64"}),
    FDP.TYPE_INT32: ("int32", {"type": "integer", "format": "int32"}),
    FDP.TYPE_FIXED64: ("fixed64", {"type": "string", "format": "uint64"}),
    FDP.TYPE_FIXED32: ("fixed32", {"type": "integer", "format": "int64", "minimum": 0}),
    FDP.TYPE_BOOL: ("bool", {"type": "boolean"}),
    FDP.TYPE_STRING: ("string", {"type": "string"}),
    FDP.TYPE_BYTES: ("bytes", {"type": "string", "format": "byte"}),
    FDP.TYPE_UINT32: ("uint32", {"type": "integer", "format": "int64", "minimum": 0}),
    FDP.TYPE_SFIXED32: ("sfixed32", {"type": "integer", "format": "int32"}),
    FDP.TYPE_SFIXED64: ("sfixed64", {"type": "string", "format": "int64"}),
    FDP.TYPE_SINT32: ("sint32", {"type": "integer", "format": "int32"}),
    FDP.TYPE_SINT64: ("sint64", {"type": "string", "format": "int64"}),
}

# Well-known types as the proto3 JSON mapping (and so the gateway) writes them.
WELL_KNOWN: dict[str, tuple[str, dict[str, Any]]] = {
    "google.protobuf.Timestamp": ("RFC 3339 string", {"type": "string", "format": "date-time"}),
    "google.protobuf.Duration": ("string, seconds with an `s` suffix, e.g. `\"3600s\"`",
                                 {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "example": "3600s"}),
    "google.protobuf.FieldMask": ("string, comma-separated field paths, e.g. `\"display_name,labels\"`",
                                  {"type": "string", "example": "display_name,labels"}),
    "google.protobuf.Empty": ("`{}`", {"type": "object"}),
    "google.protobuf.Struct": ("JSON object", {"type": "object", "additionalProperties": True}),
    "google.protobuf.Value": ("any JSON value", {}),
    "google.protobuf.ListValue": ("JSON array", {"type": "array", "items": {}}),
    "google.protobuf.Any": ("JSON object with an `@type` member",
                            {"type": "object", "properties": {"@type": {"type": "string"}},
                             "additionalProperties": True}),
    "google.protobuf.StringValue": ("string or null", {"type": "string", "nullable": True}),
    "google.protobuf.BytesValue": ("base64 string or null", {"type": "string", "format": "byte", "nullable": True}),
    "google.protobuf.BoolValue": ("boolean or null", {"type": "boolean", "nullable": True}),
    "google.protobuf.Int32Value": ("integer or null", {"type": "integer", "format": "int32", "nullable": True}),
    "google.protobuf.UInt32Value": ("integer or null", {"type": "integer", "format": "int64", "nullable": True}),
    "google.protobuf.Int64Value": ("string or null", {"type": "string", "format": "int64", "nullable": True}),
    "google.protobuf.UInt64Value": ("string or null", {"type": "string", "format": "uint64", "nullable": True}),
    "google.protobuf.FloatValue": ("number or null", {"type": "number", "format": "float", "nullable": True}),
    "google.protobuf.DoubleValue": ("number or null", {"type": "number", "format": "double", "nullable": True}),
}
