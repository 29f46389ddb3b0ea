"""scripts/gen_api_docs.py: the reference covers every RPC and HTTP binding of the descriptor set,
the OpenAPI document maps them as the gateway does, and --check tells fresh from stale output."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "gateway" / "muster.binpb"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "scripts" / "gen_api_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    if not DESCRIPTOR.exists():
        pytest.skip("gateway/muster.binpb is missing: run scripts/generate.py")
    result: descriptor_pb2.FileDescriptorSet = gen.read_descriptor_set(DESCRIPTOR)
    return result


@pytest.fixture(scope="module")
def files(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    result: dict[str, str] = gen.render(descriptor_set)
    return result


@pytest.fixture(scope="module")
def openapi(files: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(files["openapi.json"])
    return result


def _muster_methods(descriptor_set: descriptor_pb2.FileDescriptorSet) -> list[tuple[str, str, Any]]:
    """(package, "pkg.Service/Method", HttpRule) for every RPC of a muster.* package."""
    out = []
    for file in descriptor_set.file:
        if not file.package.startswith("muster."):
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                out.append((file.package, f"{file.package}.{service.name}/{method.name}", rule))
    return out


def test_descriptor_carries_comments(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    """The reference is only as good as the source info in the descriptor set."""
    muster_files = [f for f in descriptor_set.file if f.package.startswith("muster.")]
    assert muster_files
    assert all(f.source_code_info.location for f in muster_files)


def test_every_rpc_is_documented(descriptor_set: descriptor_pb2.FileDescriptorSet, files: dict[str, str]) -> None:
    methods = _muster_methods(descriptor_set)
    assert methods, "the descriptor set has no muster RPCs"
    for package, full_method, rule in methods:
        doc = files[gen.package_doc(package)]
        assert f"`/{full_method}`" in doc, f"{full_method} is missing from {gen.package_doc(package)}"
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            if verb is None:
                continue
            template = getattr(binding, verb) if verb != "custom" else binding.custom.path
            assert f"template `{template}`" in doc, f"HTTP binding {template} of {full_method} is not documented"


def test_every_http_binding_is_in_openapi(descriptor_set: descriptor_pb2.FileDescriptorSet,
                                          openapi: dict[str, Any]) -> None:
    operations = {op["x-grpc-method"]: (path, verb) for path, item in openapi["paths"].items()
                  for verb, op in item.items()}
    for _, full_method, rule in _muster_methods(descriptor_set):
        verb = rule.WhichOneof("pattern")
        if verb is None:
            continue
        assert f"/{full_method}" in operations, f"{full_method} has no OpenAPI operation"
        path, method = operations[f"/{full_method}"]
        assert method == verb
        assert gen.openapi_path(getattr(rule, verb), [])  # parses
        assert path.startswith("/v1/")


def test_openapi_maps_like_the_gateway(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    get_device = paths["/v1/devices/{device}"]["get"]
    assert [p["name"] for p in get_device["parameters"]] == ["device"]
    assert get_device["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/registry.v1.Device"}
    list_devices = paths["/v1/devices"]["get"]
    assert {p["name"] for p in list_devices["parameters"]} == {"page_size", "page_token", "filter", "order_by"}
    assert all(p["in"] == "query" for p in list_devices["parameters"])
    update = paths["/v1/devices/{device}"]["patch"]
    assert {p["name"]: p["in"] for p in update["parameters"]} == {"device": "path", "update_mask": "query"}
    assert update["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/registry.v1.Device"}
    activate = paths["/v1/devices/{device}:activate"]["post"]
    body = activate["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"etag", "reason"}  # body "*" minus the path's `name`
    empty = paths["/v1/devices/{device}"]["delete"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert empty == {"type": "object"}

    device = openapi["components"]["schemas"]["registry.v1.Device"]
    assert device["properties"]["create_time"]["format"] == "date-time"  # snake_case, RFC 3339
    assert device["properties"]["create_time"]["readOnly"] is True
    assert device["properties"]["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    token_request = openapi["components"]["schemas"]["registry.v1.IssueOperatorTokenRequest"]
    assert token_request["properties"]["ttl"]["type"] == "string"  # Duration
    assert set(token_request["required"]) == {"role", "subject"}
    assert openapi["components"]["schemas"]["registry.v1.DeviceState"]["enum"][0] == "DEVICE_STATE_UNSPECIFIED"


def test_openapi_document_is_valid(openapi: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is not installed")
    validator.validate(openapi)


def test_path_templates() -> None:
    patterns = ["devices/{device}", "tenants/{tenant}/sites/{site}"]
    assert gen.openapi_path("/v1/{name=devices/*}:activate", patterns).path == "/v1/devices/{device}:activate"
    nested = gen.openapi_path("/v1/{site.name=tenants/*/sites/*}", patterns)
    assert nested.path == "/v1/tenants/{tenant}/sites/{site}"
    assert [p.field_path for p in nested.params] == ["site.name", "site.name"]
    assert nested.bound_fields == ["site.name"]
    unknown = gen.openapi_path("/v1/{parent=things/*}/{id}", patterns)
    assert unknown.path == "/v1/things/{parent}/{id}"


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not DESCRIPTOR.exists():
        pytest.skip("gateway/muster.binpb is missing: run scripts/generate.py")
    out = tmp_path / "api"
    assert gen.main(["--check", "--out", str(out)]) == 1  # nothing generated yet
    assert gen.main(["--out", str(out)]) == 0
    assert gen.main(["--check", "--out", str(out)]) == 0
    (out / "registry.md").write_text((out / "registry.md").read_text() + "edited\n")
    assert gen.main(["--check", "--out", str(out)]) == 1
    assert gen.main(["--out", str(out)]) == 0
    (out / "gone.md").write_text(gen.MARKER + "\n# a package that no longer exists\n")
    assert gen.main(["--check", "--out", str(out)]) == 1
    assert gen.main(["--out", str(out)]) == 0
    assert not (out / "gone.md").exists()
    capsys.readouterr()


def test_committed_docs_are_fresh(files: dict[str, str]) -> None:
    committed = ROOT / "docs" / "api"
    stale = [name for name, text in files.items()
             if not (committed / name).exists() or (committed / name).read_text(encoding="utf-8") != text]
    assert not stale, f"docs/api is stale ({', '.join(stale)}): run `python scripts/gen_api_docs.py`"
