"""Every output file of the generator from one descriptor set."""

from __future__ import annotations

import json

from google.protobuf import descriptor_pb2

from .markdown import Markdown
from .model import load_model
from .openapi import OpenApi
from .output import INDEX_FILE, MARKER, OPENAPI_FILE, package_doc


def render(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    """Every output file (path relative to docs/api/) and its content."""
    model = load_model(descriptor_set)
    files = {package_doc(package): Markdown(model, package).render() for package in sorted(model.packages)}
    files[OPENAPI_FILE] = json.dumps(OpenApi(model).render(), indent=2, ensure_ascii=False) + "\n"
    index = [MARKER, "", "# API reference", "",
             "Generated from the protos (`proto/`) by `python scripts/gen_api_docs.py`; "
             "`--check` fails when these files are stale.", ""]
    for package in sorted(model.packages):
        services = [s.name for s in model.services if s.package == package]
        what = f"services {', '.join(services)}" if services else "messages only"
        index.append(f"- [`{package}`]({package_doc(package)}): {what}")
    index += [f"- [`{OPENAPI_FILE}`]({OPENAPI_FILE}): OpenAPI 3.0 of the REST gateway", ""]
    files[INDEX_FILE] = "\n".join(index)
    return files
