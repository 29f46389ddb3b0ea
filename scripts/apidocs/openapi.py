"""The OpenAPI 3.0 document of the REST gateway. It follows what the Envoy gateway does
(muster/launcher/envoy.py):

- JSON names are the proto field names (snake_case: `preserve_proto_field_names`), enums are their
  value names, 64-bit integers are strings, Timestamp is an RFC 3339 string, Duration a string such
  as "3.5s", FieldMask a comma-separated string, Empty `{}` (proto3 JSON mapping).
- A path variable `{name=devices/*}` becomes the path `/devices/{device}`, the variable names taken
  from the `google.api.resource` pattern the template matches (`devices/{device}`).
- Query parameters are the request fields bound neither by the path nor by the body; the gateway
  rejects any other query parameter.
- `required` lists only REQUIRED fields of request messages: on a resource (Device, ...) REQUIRED
  means "required on create" (AIP-203), which a JSON schema shared by create, update (with a field
  mask) and responses cannot express; every property carries its behaviours as `x-field-behavior`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2

from .model import (
    DOCUMENTED_PREFIX,
    HTTP_VERBS,
    HttpBinding,
    Message,
    Method,
    Model,
    Service,
    field_behaviors,
    map_entry,
)
from .output import LOCAL_GATEWAY
from .paths import OpenApiPath, openapi_path, query_fields
from .protojson import FDP, SCALARS, WELL_KNOWN

# What the gateway answers on an error (convert_grpc_status: google.rpc.Status as JSON).
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A gRPC status as JSON (google.rpc.Status); the HTTP status is mapped from `code`.",
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "gRPC status code, e.g. 5 (NOT_FOUND)."},
        "message": {"type": "string", "description": "What went wrong, for a person."},
        "details": {"type": "array", "description": "google.rpc error details (BadRequest, ErrorInfo, ...).",
                    "items": {"type": "object", "properties": {"@type": {"type": "string"}},
                              "additionalProperties": True}},
    },
}


def _component_name(full_name: str) -> str:
    return full_name.removeprefix(DOCUMENTED_PREFIX)


class OpenApi:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.schemas: dict[str, dict[str, Any]] = {}
        self.pending: list[str] = []

    def ref(self, full_name: str) -> dict[str, Any]:
        if full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[full_name][1])
        name = _component_name(full_name)
        if name not in self.schemas and full_name not in self.pending:
            self.pending.append(full_name)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, fd: descriptor_pb2.FieldDescriptorProto, *, repeated: bool = True) -> dict[str, Any]:
        entry = map_entry(self.model, fd)
        if entry is not None:
            return {"type": "object", "additionalProperties": self.field_schema(entry.proto.field[1])}
        if repeated and fd.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": self.field_schema(fd, repeated=False)}
        if fd.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            return self.ref(fd.type_name.lstrip("."))
        return dict(SCALARS[fd.type][1])

    def property(self, msg: Message, fd: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        schema = self.field_schema(fd)
        behaviors = field_behaviors(fd)
        description = msg.field_comments.get(fd.name, "")
        if "$ref" in schema:  # OpenAPI 3.0 ignores siblings of $ref: wrap it
            schema = {"allOf": [schema]} if (description or behaviors) else schema
        if description:
            schema["description"] = description
        if "OUTPUT_ONLY" in behaviors:
            schema["readOnly"] = True
        if behaviors:
            schema["x-field-behavior"] = behaviors
        if fd.options.deprecated:
            schema["deprecated"] = True
        return schema

    def object_schema(self, msg: Message, *, exclude: set[str] | frozenset[str] = frozenset(),
                      required: bool) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        if msg.comment:
            schema["description"] = msg.comment
        fields = [fd for fd in msg.proto.field if fd.name not in exclude]
        schema["properties"] = {fd.name: self.property(msg, fd) for fd in fields}
        needed = [fd.name for fd in fields if "REQUIRED" in field_behaviors(fd)]
        if required and needed:
            schema["required"] = needed
        return schema

    def drain(self) -> None:
        while self.pending:
            full_name = self.pending.pop(0)
            name = _component_name(full_name)
            if name in self.schemas:
                continue
            if full_name in self.model.enums:
                enum = self.model.enums[full_name]
                schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.proto.value]}
                described = [f"- `{v.name}`: {enum.value_comments[v.name]}" for v in enum.proto.value
                             if enum.value_comments.get(v.name)]
                text = "\n".join(filter(None, [enum.comment, "\n".join(described)]))
                if text:
                    schema["description"] = text
                self.schemas[name] = schema
            else:
                msg = self.model.messages[full_name]
                self.schemas[name] = self.object_schema(msg, required=full_name.endswith("Request"))

    def parameter(self, name: str, where: str, fd: descriptor_pb2.FieldDescriptorProto,
                  description: str, required: bool) -> dict[str, Any]:
        schema = self.field_schema(fd)
        if "$ref" in schema:  # enums: inline the values
            self.drain()
            schema = dict(self.schemas[schema["$ref"].rsplit("/", 1)[1]])
            schema.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": where, "required": required, "schema": schema}
        if description:
            param["description"] = description
        if where == "query" and schema.get("type") == "array":
            param["explode"] = True
        return param

    def lookup(self, type_name: str, field_path: str) -> tuple[Message, descriptor_pb2.FieldDescriptorProto]:
        msg = self.model.messages[type_name]
        head, _, rest = field_path.partition(".")
        fd = next((f for f in msg.proto.field if f.name == head), None)
        if fd is None:
            raise ValueError(f"{type_name} has no field {head!r} (HTTP rule refers to {field_path!r})")
        return self.lookup(fd.type_name.lstrip("."), rest) if rest else (msg, fd)

    def operation(self, service: Service, method: Method, binding: HttpBinding,
                  path: OpenApiPath, index: int) -> dict[str, Any]:
        suffix = f"_{index}" if index else ""
        op: dict[str, Any] = {"tags": [service.name], "operationId": f"{service.name}_{method.name}{suffix}",
                              "summary": method.name}
        if method.comment:
            op["description"] = method.comment
        op["x-grpc-method"] = f"/{service.full_name}/{method.name}"
        parameters = []
        for param in path.params:
            _, fd = self.lookup(method.input_type, param.field_path)
            parameters.append(self.parameter(param.name, "path", fd, param.description, True))
        for query, fd in query_fields(self.model, method.input_type, binding):
            owner, _ = self.lookup(method.input_type, query)
            description = owner.field_comments.get(fd.name, "")
            if fd.type == FDP.TYPE_MESSAGE and fd.type_name.lstrip(".") in WELL_KNOWN:
                description = " ".join(filter(None, [description, "As " + WELL_KNOWN[fd.type_name.lstrip(".")][0]
                                                     + "."]))
            required = "REQUIRED" in field_behaviors(fd) and "." not in query
            parameters.append(self.parameter(query, "query", fd, description, required))
        if parameters:
            op["parameters"] = parameters
        request = self.model.messages[method.input_type]
        if binding.body == "*":
            top_bound = {p for p in path.bound_fields if "." not in p}
            if top_bound:
                body_schema = self.object_schema(request, exclude=top_bound, required=True)
            else:
                body_schema = self.ref(method.input_type)
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
        elif binding.body:
            _, fd = self.lookup(method.input_type, binding.body)
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": self.field_schema(fd)}}}
        if binding.response_body:
            _, fd = self.lookup(method.output_type, binding.response_body)
            response_schema = self.field_schema(fd)
        else:
            response_schema = self.ref(method.output_type)
        op["responses"] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": response_schema}}},
            "default": {"$ref": "#/components/responses/Error"},
        }
        return op

    def render(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        tags = []
        for service in self.model.services:
            if not service.package.startswith(DOCUMENTED_PREFIX):
                continue
            tag: dict[str, Any] = {"name": service.name}
            if service.comment:
                tag["description"] = service.comment
            tags.append(tag)
            for method in service.methods:
                for index, binding in enumerate(method.bindings):
                    if binding.verb.lower() not in HTTP_VERBS:
                        raise ValueError(f"{method.name}: custom HTTP verb {binding.verb} has no OpenAPI method")
                    path = openapi_path(binding.template, self.model.resource_patterns)
                    item = paths.setdefault(path.path, {})
                    if binding.verb.lower() in item:
                        raise ValueError(f"two RPCs map to {binding.verb} {path.path}")
                    item[binding.verb.lower()] = self.operation(service, method, binding, path, index)
        self.drain()
        return {
            "openapi": "3.0.3",
            "info": {
                "title": "Muster API",
                "version": "v1",
                "description": "REST/JSON view of Muster's gRPC services, as the Envoy gateway transcodes them. "
                               "Generated from the protos by scripts/gen_api_docs.py: do not edit.",
                "license": {"name": "Apache-2.0"},
            },
            "servers": [{"url": LOCAL_GATEWAY, "description": "`muster up` on this machine"}],
            "security": [{"bearer": []}],
            "tags": tags,
            "paths": dict(sorted(paths.items())),
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                               "description": "An operator token (`muster tokens issue`)."}},
                "responses": {"Error": {"description": "Error: a gRPC status mapped to an HTTP status.",
                                        "content": {"application/json": {"schema": {
                                            "$ref": "#/components/schemas/Status"}}}}},
                "schemas": {"Status": STATUS_SCHEMA, **dict(sorted(self.schemas.items()))},
            },
        }
