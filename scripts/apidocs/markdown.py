"""The Markdown reference of one `muster.*` package: services and RPCs with their HTTP mapping, messages,
enums, comments and field behaviours."""

from __future__ import annotations

from google.api import resource_pb2
from google.protobuf import descriptor_pb2

from .model import DOCUMENTED_PREFIX, Enum, Message, Model, Service, field_behaviors, map_entry
from .output import LOCAL_GATEWAY, MARKER, OPENAPI_FILE, package_doc
from .paths import openapi_path, query_fields
from .protojson import FDP, SCALARS, WELL_KNOWN


def _cell(text: str) -> str:
    """Hard-wrapped comment lines join with a space; blank lines (paragraphs) become <br><br>."""
    paragraphs = [" ".join(p.split("\n")) for p in text.split("\n\n")]
    return "<br><br>".join(paragraphs).replace("|", "\\|")


def _anchor(full_name: str) -> str:
    return full_name.lower().replace(".", "-")


class Markdown:
    def __init__(self, model: Model, package: str) -> None:
        self.model, self.package = model, package

    def link(self, full_name: str) -> str:
        owner = self.model.messages.get(full_name) or self.model.enums.get(full_name)
        if owner is None or not owner.file.package.startswith(DOCUMENTED_PREFIX):
            return f"`{full_name}`"
        short = full_name.removeprefix(owner.file.package + ".")
        target = f"#{_anchor(full_name)}"
        if owner.file.package != self.package:
            target = package_doc(owner.file.package) + target
            short = full_name
        return f"[`{short}`]({target})"

    def field_type(self, fd: descriptor_pb2.FieldDescriptorProto) -> str:
        entry = map_entry(self.model, fd)
        if entry is not None:
            key, value = entry.proto.field[0], entry.proto.field[1]
            if value.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
                return f"map<`{SCALARS[key.type][0]}`, {self.field_type(value)}>"
            return f"`map<{SCALARS[key.type][0]}, {SCALARS[value.type][0]}>`"
        if fd.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            base = self.link(fd.type_name.lstrip("."))
        else:
            base = f"`{SCALARS[fd.type][0]}`"
        if fd.label == FDP.LABEL_REPEATED:
            return f"repeated {base}"
        if fd.proto3_optional:
            return f"optional {base}"
        return base

    def field_notes(self, msg: Message, fd: descriptor_pb2.FieldDescriptorProto) -> str:
        notes = []
        if fd.type == FDP.TYPE_MESSAGE and fd.type_name.lstrip(".") in WELL_KNOWN:
            notes.append("JSON: " + WELL_KNOWN[fd.type_name.lstrip(".")][0] + ".")
        if fd.HasField("oneof_index") and not fd.proto3_optional:
            notes.append(f"Member of oneof `{msg.proto.oneof_decl[fd.oneof_index].name}`.")
        reference = fd.options.Extensions[resource_pb2.resource_reference]
        if reference.type or reference.child_type:
            notes.append(f"Refers to `{reference.type or reference.child_type}`.")
        if fd.options.deprecated:
            notes.append("Deprecated.")
        comment = msg.field_comments.get(fd.name, "")
        return " ".join([comment, *notes]).strip()

    def render(self) -> str:
        files = self.model.packages[self.package]
        services = [s for s in self.model.services if s.package == self.package]
        messages = [m for m in self.model.messages.values()
                    if m.file.package == self.package and not m.proto.options.map_entry]
        enums = [e for e in self.model.enums.values() if e.file.package == self.package]
        out = [MARKER, "", f"# `{self.package}`", ""]
        out.append("Files: " + ", ".join(f"`{f.name}`" for f in files) + ".")
        out.append("")
        if services:
            out += ["REST calls go through the gateway (`muster up` serves it on "
                    f"`{LOCAL_GATEWAY}`) with `Authorization: Bearer <token>`; JSON field names are the "
                    "proto field names below (snake_case). gRPC clients call the services directly. "
                    f"The same calls as OpenAPI 3.0: [`{OPENAPI_FILE}`]({OPENAPI_FILE}).", ""]
        out += ["## Contents", ""]
        if services:
            out.append("- Services: " + ", ".join(f"[{s.name}](#{_anchor(s.full_name)})" for s in services))
        if messages:
            out.append("- Messages: " + ", ".join(self.link(m.full_name) for m in messages))
        if enums:
            out.append("- Enums: " + ", ".join(self.link(e.full_name) for e in enums))
        out.append("")
        if services:
            out += ["## Services", ""]
            for service in services:
                out += self.service(service)
        if messages:
            out += ["## Messages", ""]
            for msg in messages:
                out += self.message(msg)
        if enums:
            out += ["## Enums", ""]
            for enum in enums:
                out += self.enum(enum)
        return "\n".join(out).rstrip("\n") + "\n"

    def service(self, service: Service) -> list[str]:
        out = [f'<a id="{_anchor(service.full_name)}"></a>', "", f"### {service.name}", ""]
        if service.comment:
            out += [service.comment, ""]
        out += ["| RPC | HTTP | Request | Response |", "|---|---|---|---|"]
        for method in service.methods:
            http = "<br>".join(
                f"`{b.verb} {openapi_path(b.template, self.model.resource_patterns).path}`"
                for b in method.bindings) or "(gRPC only)"
            out.append(f"| [{method.name}](#{_anchor(service.full_name + '.' + method.name)}) | {http} | "
                       f"{self.link(method.input_type)} | {self.link(method.output_type)} |")
        out.append("")
        for method in service.methods:
            out += [f'<a id="{_anchor(service.full_name + "." + method.name)}"></a>', "",
                    f"#### {service.name}.{method.name}", ""]
            if method.comment:
                out += [method.comment, ""]
            out.append(f"- gRPC: `/{service.full_name}/{method.name}`")
            for b in method.bindings:
                path = openapi_path(b.template, self.model.resource_patterns)
                body = {"": "no body", "*": "body: the request's fields not in the path"}.get(
                    b.body, f"body: the request's `{b.body}`")
                out.append(f"- HTTP: `{b.verb} {path.path}` ({body}; template `{b.template}`)")
                query = query_fields(self.model, method.input_type, b)
                if query:
                    out.append("  - query parameters: " + ", ".join(f"`{q}`" for q, _ in query))
            streaming = " (client streaming)" if method.proto.client_streaming else ""
            out.append(f"- Request: {self.link(method.input_type)}{streaming}")
            streaming = " (server streaming)" if method.proto.server_streaming else ""
            out.append(f"- Response: {self.link(method.output_type)}{streaming}")
            out.append("")
        return out

    def message(self, msg: Message) -> list[str]:
        short = msg.full_name.removeprefix(self.package + ".")
        out = [f'<a id="{_anchor(msg.full_name)}"></a>', "", f"### {short}", ""]
        if msg.comment:
            out += [msg.comment, ""]
        resource = msg.proto.options.Extensions[resource_pb2.resource]
        if resource.type:
            patterns = ", ".join(f"`{p}`" for p in resource.pattern)
            out += [f"Resource `{resource.type}`, name pattern {patterns}.", ""]
        if not msg.proto.field:
            return [*out, "No fields.", ""]
        out += ["| Field | Type | Behavior | Description |", "|---|---|---|---|"]
        for fd in msg.proto.field:
            behaviors = ", ".join(field_behaviors(fd))
            out.append(f"| `{fd.name}` | {self.field_type(fd)} | {behaviors} | "
                       f"{_cell(self.field_notes(msg, fd))} |")
        return [*out, ""]

    def enum(self, enum: Enum) -> list[str]:
        short = enum.full_name.removeprefix(self.package + ".")
        out = [f'<a id="{_anchor(enum.full_name)}"></a>', "", f"### {short}", ""]
        if enum.comment:
            out += [enum.comment, ""]
        out += ["| Value | Number | Description |", "|---|---|---|"]
        for value in enum.proto.value:
            out.append(f"| `{value.name}` | {value.number} | {_cell(enum.value_comments.get(value.name, ''))} |")
        return [*out, ""]
