"""The descriptor set indexed by fully-qualified name, with the proto comments and HTTP bindings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import (
    annotations_pb2,
    field_behavior_pb2,
    http_pb2,
    resource_pb2,
)
from google.protobuf import descriptor_pb2

from .protojson import FDP

DOCUMENTED_PREFIX = "muster."
HTTP_VERBS = ("get", "put", "post", "delete", "patch")

# descriptor.proto field numbers used in SourceCodeInfo paths
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


@dataclass
class Message:
    full_name: str
    proto: descriptor_pb2.DescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    comment: str
    field_comments: dict[str, str]


@dataclass
class Enum:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    comment: str
    value_comments: dict[str, str]


@dataclass
class HttpBinding:
    verb: str  # upper case: GET, POST, ... or a custom verb
    template: str  # as written in the proto: /v1/{name=devices/*}
    body: str  # "", "*" or a field path
    response_body: str


@dataclass
class Method:
    name: str
    proto: descriptor_pb2.MethodDescriptorProto
    comment: str
    bindings: list[HttpBinding]

    @property
    def input_type(self) -> str:
        return self.proto.input_type.lstrip(".")

    @property
    def output_type(self) -> str:
        return self.proto.output_type.lstrip(".")


@dataclass
class Service:
    full_name: str
    name: str
    package: str
    comment: str
    methods: list[Method]


@dataclass
class Model:
    messages: dict[str, Message] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    packages: dict[str, list[descriptor_pb2.FileDescriptorProto]] = field(default_factory=dict)
    resource_patterns: list[str] = field(default_factory=list)


def _comment(location: descriptor_pb2.SourceCodeInfo.Location | None) -> str:
    if location is None:
        return ""
    parts = [location.leading_comments, location.trailing_comments]
    lines: list[str] = []
    for part in parts:
        for line in part.strip("\n").splitlines():
            lines.append(line[1:] if line.startswith(" ") else line)
    return "\n".join(lines).strip()


def load_model(descriptor_set: descriptor_pb2.FileDescriptorSet) -> Model:
    model = Model()
    for file in descriptor_set.file:
        locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
        if file.package.startswith(DOCUMENTED_PREFIX):
            model.packages.setdefault(file.package, []).append(file)
        prefix = f"{file.package}." if file.package else ""

        def add_message(msg: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...],
                        file: descriptor_pb2.FileDescriptorProto = file,
                        locations: dict[tuple[int, ...], Any] = locations) -> None:
            full = f"{scope}{msg.name}"
            fields = {f.name: _comment(locations.get((*path, _MESSAGE_FIELD, i))) for i, f in enumerate(msg.field)}
            model.messages[full] = Message(full, msg, file, _comment(locations.get(path)), fields)
            resource = msg.options.Extensions[resource_pb2.resource]
            model.resource_patterns.extend(resource.pattern)
            for i, nested in enumerate(msg.nested_type):
                add_message(nested, f"{full}.", (*path, _MESSAGE_NESTED, i))
            for i, nested_enum in enumerate(msg.enum_type):
                add_enum(nested_enum, f"{full}.", (*path, _MESSAGE_ENUM, i))

        def add_enum(enum: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...],
                     file: descriptor_pb2.FileDescriptorProto = file,
                     locations: dict[tuple[int, ...], Any] = locations) -> None:
            values = {v.name: _comment(locations.get((*path, _ENUM_VALUE, i))) for i, v in enumerate(enum.value)}
            full = f"{scope}{enum.name}"
            model.enums[full] = Enum(full, enum, file, _comment(locations.get(path)), values)

        for i, msg in enumerate(file.message_type):
            add_message(msg, prefix, (_FILE_MESSAGE, i))
        for i, enum in enumerate(file.enum_type):
            add_enum(enum, prefix, (_FILE_ENUM, i))
        for i, svc in enumerate(file.service):
            methods = []
            for j, method in enumerate(svc.method):
                rule = method.options.Extensions[annotations_pb2.http]
                bindings = [_binding(r) for r in (rule, *rule.additional_bindings)
                            if r.WhichOneof("pattern") is not None]
                methods.append(Method(method.name, method,
                                      _comment(locations.get((_FILE_SERVICE, i, _SERVICE_METHOD, j))), bindings))
            model.services.append(Service(f"{prefix}{svc.name}", svc.name, file.package,
                                          _comment(locations.get((_FILE_SERVICE, i))), methods))
    return model


def _binding(rule: http_pb2.HttpRule) -> HttpBinding:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return HttpBinding(rule.custom.kind.upper(), rule.custom.path, rule.body, rule.response_body)
    assert kind in HTTP_VERBS, kind
    return HttpBinding(kind.upper(), getattr(rule, kind), rule.body, rule.response_body)


def field_behaviors(fd: descriptor_pb2.FieldDescriptorProto) -> list[str]:
    return [field_behavior_pb2.FieldBehavior.Name(b) for b in fd.options.Extensions[field_behavior_pb2.field_behavior]]


def map_entry(model: Model, fd: descriptor_pb2.FieldDescriptorProto) -> Message | None:
    if fd.type != FDP.TYPE_MESSAGE or fd.label != FDP.LABEL_REPEATED:
        return None
    entry = model.messages.get(fd.type_name.lstrip("."))
    return entry if entry is not None and entry.proto.options.map_entry else None


def read_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    # google.api's *_pb2 imports above register the http/field_behavior/resource extensions,
    # so they are parsed into the options.
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
