"""The CLI's connection, authentication, deadline and error rendering, against an in-process fake registry."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from fakes.registry_grpc import FakeRegistry, serve_fake_registry
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from typer.testing import CliRunner, Result

from muster.cli.app import app
from muster.cli.client import Connection, describe_rpc_error, resolve_target
from muster.runtime.errors import FieldViolation, InvalidArgument, PermissionDenied


@pytest.fixture
def registry() -> Iterator[tuple[FakeRegistry, str]]:
    with serve_fake_registry() as served:
        yield served


def invoke(args: list[str], data_dir: Path, env: Mapping[str, str] | None = None) -> Result:
    """Run `muster ARGS` with a clean environment: nothing leaks in from the developer's shell."""
    clean: dict[str, str | None] = {"MUSTER_GRPC": None, "MUSTER_TOKEN": None, "MUSTER_DATA_DIR": str(data_dir),
                                    "XDG_DATA_HOME": str(data_dir / "xdg")}
    clean.update(env or {})
    return CliRunner().invoke(app, args, env=clean)


def write_endpoints(data_dir: Path, address: str, admin_token: str) -> None:
    run = data_dir / "run"
    run.mkdir(parents=True)
    (run / "endpoints.json").write_text(json.dumps({
        "rest": "http://127.0.0.1:1", "grpc": {"registry": address}, "admin_token": admin_token,
        "data_dir": str(data_dir)}))


def test_token_option_is_sent_as_a_bearer_authorization_header(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    result = invoke(["tenants", "list", "--grpc", address, "--token", "t0k"], tmp_path)
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == "Bearer t0k"


def test_token_and_address_come_from_env_vars(registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    result = invoke(["tenants", "list"], tmp_path, env={"MUSTER_GRPC": address, "MUSTER_TOKEN": "from-env"})
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == "Bearer from-env"


def test_endpoints_json_of_the_data_dir_supplies_address_and_admin_token(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    data_dir = tmp_path / "platform"
    write_endpoints(data_dir, address, "bootstrap-admin")
    result = invoke(["tenants", "list", "--data-dir", str(data_dir)], tmp_path)
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == "Bearer bootstrap-admin"


def test_muster_data_dir_env_var_locates_endpoints_json(registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    write_endpoints(tmp_path, address, "bootstrap-admin")
    result = invoke(["tenants", "list"], tmp_path)
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == "Bearer bootstrap-admin"


def test_explicit_token_wins_over_the_admin_token_in_endpoints_json(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    write_endpoints(tmp_path, address, "bootstrap-admin")
    result = invoke(["tenants", "list", "--token", "mine"], tmp_path)
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == "Bearer mine"


def test_without_any_token_no_authorization_header_is_sent(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    result = invoke(["tenants", "list", "--grpc", address], tmp_path)
    assert result.exit_code == 0, result.output
    assert "authorization" not in fake.calls[0].metadata


def test_without_endpoints_json_the_default_address_is_the_registry_port(tmp_path: Path) -> None:
    target = resolve_target(Connection(grpc=None, token=None, timeout=3.0, data_dir=tmp_path))
    assert (target.address, target.token, target.timeout) == ("127.0.0.1:50051", None, 3.0)


def test_every_call_carries_the_timeout_as_its_deadline(registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    result = invoke(["tenants", "list", "--grpc", address, "--timeout", "4"], tmp_path)
    assert result.exit_code == 0, result.output
    remaining = fake.calls[0].time_remaining
    # gRPC rounds the wire-encoded timeout (grpc-timeout header) up slightly, so allow a few ms over.
    assert remaining is not None and 3.0 < remaining <= 4.1


def test_a_slow_server_ends_in_deadline_exceeded_with_exit_code_1(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    fake.delay = 1.0
    result = invoke(["tenants", "list", "--grpc", address, "--timeout", "0.2"], tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: DEADLINE_EXCEEDED: ")
    assert "--timeout" in result.stderr


def test_invalid_argument_prints_code_message_and_each_field_violation(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    fake.fail_with("CreateTenant", InvalidArgument("2 fields are invalid", violations=[
        FieldViolation("tenant_id", "must be 3-40 of [a-z0-9-]"),
        FieldViolation("tenant.display_name", "is required")]))
    result = invoke(["tenants", "create", "X", "--display-name", "", "--grpc", address], tmp_path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: INVALID_ARGUMENT: 2 fields are invalid",
        "  - tenant_id: must be 3-40 of [a-z0-9-]",
        "  - tenant.display_name: is required",
    ]
    assert not isinstance(result.exception, grpc.RpcError)


def test_a_single_field_error_is_one_line_when_the_message_already_names_the_field(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    fake.fail_with("ListDevices", InvalidArgument.field("filter", "unknown field \"colour\""))
    result = invoke(["devices", "list", "--filter", "colour = 3", "--grpc", address], tmp_path)
    assert result.exit_code == 1
    assert result.stderr == 'error: INVALID_ARGUMENT: filter: unknown field "colour"\n'


def test_a_platform_admin_token_on_tenant_data_gets_a_hint_to_issue_a_tenant_token(
        registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    fake.fail_with("ListDevices", PermissionDenied("this call acts inside a tenant", reason="TENANT_REQUIRED"))
    result = invoke(["devices", "list", "--grpc", address], tmp_path)
    assert result.exit_code == 1
    first, hint = result.stderr.splitlines()
    assert first == "error: PERMISSION_DENIED: this call acts inside a tenant"
    assert hint.startswith("hint: ") and "muster tokens issue --tenant" in hint


def test_an_unreachable_registry_is_one_error_line_and_a_hint_not_a_traceback(tmp_path: Path) -> None:
    result = invoke(["devices", "get", "abc", "--grpc", "127.0.0.1:1", "--timeout", "2"], tmp_path)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: UNAVAILABLE: ")
    assert lines[1].startswith("hint: is the platform running at 127.0.0.1:1?")
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception


def test_a_corrupt_endpoints_json_is_an_error_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "endpoints.json").write_text("{not json")
    result = invoke(["tenants", "list"], tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot read {tmp_path / 'run' / 'endpoints.json'}")


def _aio_error(code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, str | bytes], ...]
               ) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=message)


def test_an_error_without_rich_details_renders_its_code_and_message() -> None:
    error = _aio_error(grpc.StatusCode.NOT_FOUND, "devices/x not found", ())
    assert describe_rpc_error(error) == ["error: NOT_FOUND: devices/x not found"]


def test_undecodable_status_details_are_ignored() -> None:
    error = _aio_error(grpc.StatusCode.INTERNAL, "boom", (("grpc-status-details-bin", b"\xff\xff not a proto"),))
    assert describe_rpc_error(error) == ["error: INTERNAL: boom"]


def test_bad_request_details_are_decoded_from_the_trailing_metadata() -> None:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="filter", description="unknown field 'colour'")]))
    status = status_pb2.Status(code=3, message="the filter is invalid", details=[detail])
    error = _aio_error(grpc.StatusCode.INVALID_ARGUMENT, status.message,
                       (("grpc-status-details-bin", status.SerializeToString()),))
    assert describe_rpc_error(error) == [
        "error: INVALID_ARGUMENT: the filter is invalid", "  - filter: unknown field 'colour'"]
