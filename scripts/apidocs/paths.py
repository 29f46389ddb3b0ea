"""HTTP rule templates as OpenAPI paths (`/v1/{name=devices/*}` -> `/v1/devices/{device}`), and the request
fields that travel as query parameters."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

from .model import HttpBinding, Model, map_entry
from .protojson import FDP, WELL_KNOWN

_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


@dataclass
class PathParam:
    name: str  # the OpenAPI parameter name
    field_path: str  # the request field it fills, e.g. "name" or "device.name"
    description: str


@dataclass
class OpenApiPath:
    path: str
    params: list[PathParam]
    bound_fields: list[str]  # request field paths bound by the template


def _match_pattern(segments: list[str], patterns: Sequence[str]) -> list[str] | None:
    """Names for the `*` segments of `segments` from the first resource pattern that fits."""
    for pattern in patterns:
        parts = pattern.split("/")
        if len(parts) != len(segments):
            continue
        names: list[str] = []
        for want, have in zip(parts, segments, strict=True):
            variable = want.startswith("{") and want.endswith("}")
            if have == "*" and variable:
                names.append(want[1:-1])
            elif have != want:
                break
        else:
            return names
    return None


def openapi_path(template: str, patterns: Sequence[str]) -> OpenApiPath:
    """`/v1/{device.name=devices/*}:activate` -> `/v1/devices/{device}:activate`."""
    params: list[PathParam] = []
    bound: list[str] = []
    taken: set[str] = set()

    def unique(name: str) -> str:
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}{n}", n + 1
        taken.add(candidate)
        return candidate

    def replace(match: re.Match[str]) -> str:
        field_path, sub = match.group(1), match.group(2) or "*"
        bound.append(field_path)
        segments = sub.split("/")
        if "**" in segments:
            raise ValueError(f"'**' in {template!r} is not supported by this generator")
        names = _match_pattern(segments, patterns) or [
            f"{field_path.replace('.', '_')}_{i}" if segments.count("*") > 1 else field_path.replace(".", "_")
            for i in range(segments.count("*"))]
        out, stars = [], iter(names)
        for segment in segments:
            if segment == "*":
                name = unique(next(stars))
                out.append(f"{{{name}}}")
                description = (f"`{field_path}` is `{sub.replace('*', '{' + name + '}', 1)}`" if sub != "*"
                               else f"The request's `{field_path}`.")
                params.append(PathParam(name, field_path, description))
            else:
                out.append(segment)
        return "/".join(out)

    return OpenApiPath(_VARIABLE.sub(replace, template), params, bound)


def query_fields(model: Model, request: str,
                 binding: HttpBinding) -> list[tuple[str, descriptor_pb2.FieldDescriptorProto]]:
    """Request fields that travel as query parameters: not bound by the path or the body
    (with body "*" there are none). Nested messages contribute their leaves as `a.b`."""
    if binding.body == "*":
        return []
    bound = set(openapi_path(binding.template, model.resource_patterns).bound_fields)
    if binding.body:
        bound.add(binding.body)
    out: list[tuple[str, descriptor_pb2.FieldDescriptorProto]] = []

    def walk(type_name: str, prefix: str, seen: frozenset[str]) -> None:
        for fd in model.messages[type_name].proto.field:
            path = prefix + fd.name
            if path in bound:
                continue
            if any(b.startswith(path + ".") for b in bound) or (
                    fd.type == FDP.TYPE_MESSAGE and fd.type_name.lstrip(".") not in WELL_KNOWN
                    and map_entry(model, fd) is None and fd.label != FDP.LABEL_REPEATED):
                nested = fd.type_name.lstrip(".")
                if nested not in seen:
                    walk(nested, path + ".", seen | {nested})
                continue
            if map_entry(model, fd) is not None or (
                    fd.label == FDP.LABEL_REPEATED and fd.type == FDP.TYPE_MESSAGE
                    and fd.type_name.lstrip(".") not in WELL_KNOWN):
                continue  # maps and repeated messages cannot be query parameters
            out.append((path, fd))

    walk(request, "", frozenset({request}))
    return out
