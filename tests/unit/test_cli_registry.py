"""What each `muster tenants|tokens|sites|devices` command sends and prints, against an in-process fake registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.registry_grpc import FakeRegistry, serve_fake_registry
from typer.testing import CliRunner, Result

from muster.cli.app import app
from muster.registry.v1 import resources_pb2 as pb
from muster.registry.v1 import token_service_pb2 as tok


class Cli:
    """`muster` against the fake, with a clean environment and a token already set."""

    def __init__(self, fake: FakeRegistry, address: str, data_dir: Path) -> None:
        self.fake = fake
        self._env: dict[str, str | None] = {"MUSTER_GRPC": address, "MUSTER_TOKEN": "test-token",
                                            "MUSTER_DATA_DIR": str(data_dir), "XDG_DATA_HOME": str(data_dir)}

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self._env)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> dict[str, object]:
        content = json.loads(self.ok(*args, "--output", "json").stdout)
        assert isinstance(content, dict)
        return content


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with serve_fake_registry() as (fake, address):
        yield Cli(fake, address, tmp_path)


def add_devices(fake: FakeRegistry, count: int) -> list[str]:
    names = [f"devices/d{i:019d}" for i in range(count)]
    for i, name in enumerate(names):
        fake.devices[name] = pb.Device(name=name, display_name=f"pump {i}", state=pb.DEVICE_STATE_ACTIVE)
    return names


# tenants

def test_tenants_create_sends_the_id_and_display_name_and_shows_the_tenant(cli: Cli) -> None:
    result = cli.ok("tenants", "create", "acme", "--display-name", "Acme Corp")
    (request,) = cli.fake.requests("CreateTenant")
    assert (request.tenant_id, request.tenant.display_name) == ("acme", "Acme Corp")
    assert result.stdout.splitlines()[:2] == ["ID            acme", "DISPLAY NAME  Acme Corp"]


def test_tenants_list_prints_a_header_and_one_row_per_tenant(cli: Cli) -> None:
    cli.ok("tenants", "create", "acme", "--display-name", "Acme Corp")
    cli.ok("tenants", "create", "globex", "--display-name", "Globex")
    lines = cli.ok("tenants", "list").stdout.splitlines()
    assert lines[0].split("  ")[0] == "ID"
    assert [line.split()[0] for line in lines[1:]] == ["acme", "globex"]


@pytest.mark.parametrize("given", ["acme", "tenants/acme"])
def test_tenants_get_accepts_a_bare_id_or_the_resource_name(cli: Cli, given: str) -> None:
    cli.ok("tenants", "create", "acme", "--display-name", "Acme Corp")
    assert cli.json("tenants", "get", given)["name"] == "tenants/acme"
    assert cli.fake.requests("GetTenant")[0].name == "tenants/acme"


def test_tenants_delete_sends_the_etag_and_confirms(cli: Cli) -> None:
    cli.ok("tenants", "create", "acme", "--display-name", "Acme Corp")
    result = cli.ok("tenants", "delete", "acme", "--etag", '"e1"')
    assert cli.fake.requests("DeleteTenant")[0].etag == '"e1"'
    assert result.stdout == "deleted tenants/acme\n"


@pytest.mark.parametrize(("given", "sent"), [('"3"', '"3"'), ("3", '"3"'), ('W/"3"', 'W/"3"')])
def test_an_etag_typed_without_its_quotes_is_sent_quoted(cli: Cli, given: str, sent: str) -> None:
    (name,) = add_devices(cli.fake, 1)
    cli.ok("devices", "update", name, "--notes", "n", "--etag", given)
    assert cli.fake.requests("UpdateDevice")[0].device.etag == sent


def test_a_missing_tenant_is_not_found_with_exit_code_1(cli: Cli) -> None:
    result = cli("tenants", "get", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: NOT_FOUND: tenants/nope not found\n"


def test_an_id_with_a_foreign_collection_is_a_usage_error(cli: Cli) -> None:
    result = cli("tenants", "get", "sites/berlin")
    assert result.exit_code == 2
    assert cli.fake.calls == []


# tokens

def test_tokens_issue_prints_the_token_alone_for_command_substitution(cli: Cli) -> None:
    result = cli.ok("tokens", "issue", "--tenant", "acme", "--role", "admin", "--subject", "ops@acme.example")
    assert result.stdout == "jwt-for-ops@acme.example\n"
    (request,) = cli.fake.requests("IssueOperatorToken")
    assert (request.tenant, request.role, request.subject) == ("tenants/acme", tok.ROLE_ADMIN, "ops@acme.example")
    assert not request.HasField("ttl")


@pytest.mark.parametrize(("ttl", "seconds"), [("24h", 86_400), ("30d", 2_592_000), ("90m", 5_400), ("1w", 604_800)])
def test_tokens_issue_sends_the_ttl_as_a_duration(cli: Cli, ttl: str, seconds: int) -> None:
    cli.ok("tokens", "issue", "--tenant", "acme", "--role", "viewer", "--subject", "s", "--ttl", ttl)
    assert cli.fake.requests("IssueOperatorToken")[0].ttl.seconds == seconds


@pytest.mark.parametrize("ttl", ["24", "1y", "0h", "-1d", "h"])
def test_tokens_issue_refuses_a_malformed_ttl_before_calling(cli: Cli, ttl: str) -> None:
    result = cli("tokens", "issue", "--tenant", "acme", "--role", "viewer", "--subject", "s", "--ttl", ttl)
    assert result.exit_code == 2
    assert cli.fake.calls == []


def test_tokens_issue_needs_a_tenant_unless_the_role_is_platform_admin(cli: Cli) -> None:
    assert cli("tokens", "issue", "--role", "operator", "--subject", "s").exit_code == 2
    assert cli("tokens", "issue", "--role", "platform-admin", "--tenant", "acme", "--subject", "s").exit_code == 2
    cli.ok("tokens", "issue", "--role", "platform-admin", "--subject", "s")
    (request,) = cli.fake.requests("IssueOperatorToken")
    assert (request.tenant, request.role) == ("", tok.ROLE_PLATFORM_ADMIN)


def test_tokens_issue_json_includes_the_expire_time(cli: Cli) -> None:
    content = cli.json("tokens", "issue", "--role", "platform-admin", "--subject", "s")
    assert set(content) == {"token", "expire_time"}


# sites

def test_sites_create_sends_id_labels_time_zone_and_location(cli: Cli) -> None:
    cli.ok("sites", "create", "--id", "berlin", "--display-name", "Berlin plant", "--time-zone", "Europe/Berlin",
           "--label", "region=eu", "--label", "tier=1", "--location", "52.5,13.4")
    (request,) = cli.fake.requests("CreateSite")
    assert request.site_id == "berlin"
    assert dict(request.site.labels) == {"region": "eu", "tier": "1"}
    assert request.site.time_zone == "Europe/Berlin"
    assert (request.site.location.latitude, request.site.location.longitude) == (52.5, 13.4)


def test_sites_update_masks_exactly_the_options_given(cli: Cli) -> None:
    cli.ok("sites", "create", "--id", "berlin", "--display-name", "Berlin plant", "--address", "Hauptstr. 1")
    content = cli.json("sites", "update", "berlin", "--display-name", "Berlin", "--label", "a=1", "--etag", "e1")
    (request,) = cli.fake.requests("UpdateSite")
    assert list(request.update_mask.paths) == ["display_name", "labels"]
    assert (request.site.name, request.site.etag) == ("sites/berlin", '"e1"')
    assert (content["display_name"], content["address"], content["labels"]) == ("Berlin", "Hauptstr. 1", {"a": "1"})


def test_sites_update_clear_labels_sends_an_empty_label_map(cli: Cli) -> None:
    cli.ok("sites", "create", "--id", "berlin", "--display-name", "B", "--label", "a=1")
    cli.ok("sites", "update", "berlin", "--clear-labels")
    (request,) = cli.fake.requests("UpdateSite")
    assert list(request.update_mask.paths) == ["labels"]
    assert dict(request.site.labels) == {}


def test_an_update_without_any_change_is_a_usage_error(cli: Cli) -> None:
    for resource in ("sites", "devices"):
        result = cli(resource, "update", "x1234")
        assert result.exit_code == 2
        assert result.stderr.startswith("error: nothing to change")
    assert cli.fake.calls == []


@pytest.mark.parametrize("label", ["novalue", "=v"])
def test_a_label_that_is_not_key_equals_value_is_a_usage_error(cli: Cli, label: str) -> None:
    assert cli("sites", "create", "--display-name", "B", "--label", label).exit_code == 2
    assert cli.fake.calls == []


# devices

def test_devices_create_turns_the_site_id_into_a_site_name(cli: Cli) -> None:
    content = cli.json("devices", "create", "--display-name", "pump 1", "--site", "berlin", "--serial", "SN-1",
                       "--label", "floor=3", "--notes", "left of the door")
    (request,) = cli.fake.requests("CreateDevice")
    assert request.device.site == "sites/berlin"
    assert (request.device.serial, dict(request.device.labels), request.device.notes) == (
        "SN-1", {"floor": "3"}, "left of the door")
    assert content["state"] == "DEVICE_STATE_PROVISIONED"
    assert str(content["name"]).startswith("devices/")


def test_devices_list_all_follows_next_page_token_to_the_end(cli: Cli) -> None:
    names = add_devices(cli.fake, 5)
    content = cli.json("devices", "list", "--all", "--page-size", "2", "--filter", "state = ACTIVE")
    assert [d["name"] for d in content["devices"]] == names  # type: ignore[attr-defined]
    assert content["next_page_token"] == ""
    requests = cli.fake.requests("ListDevices")
    assert [r.page_token for r in requests] == ["", "2", "4"]
    assert {(r.filter, r.page_size) for r in requests} == {("state = ACTIVE", 2)}


def test_devices_list_shows_one_page_and_says_how_to_get_the_next(cli: Cli) -> None:
    add_devices(cli.fake, 3)
    result = cli.ok("devices", "list", "--page-size", "2", "--order-by", "display_name desc")
    assert len(result.stdout.splitlines()) == 3  # header and two rows
    assert "--page-token 2" in result.stderr
    assert cli.fake.requests("ListDevices")[0].order_by == "display_name desc"
    result = cli.ok("devices", "list", "--page-size", "2", "--page-token", "2")
    assert len(result.stdout.splitlines()) == 2


def test_devices_table_shows_the_short_state_and_site_id(cli: Cli) -> None:
    cli.ok("devices", "create", "--display-name", "pump 1", "--site", "berlin")
    header, row = cli.ok("devices", "list").stdout.splitlines()
    assert header.split()[:5] == ["ID", "DISPLAY", "NAME", "STATE", "SITE"]
    assert "PROVISIONED" in row.split() and "berlin" in row.split()


def test_devices_json_uses_proto_field_names(cli: Cli) -> None:
    (name,) = add_devices(cli.fake, 1)
    content = cli.json("devices", "get", name)
    assert content["display_name"] == "pump 0"
    assert "displayName" not in content


def test_devices_update_masks_exactly_the_options_given_and_empty_site_unassigns(cli: Cli) -> None:
    (name,) = add_devices(cli.fake, 1)
    cli.ok("devices", "update", name, "--notes", "moved", "--site", "", "--location", "1,2,30")
    (request,) = cli.fake.requests("UpdateDevice")
    assert list(request.update_mask.paths) == ["site", "notes", "location"]
    assert (request.device.site, request.device.notes, request.device.location.altitude) == ("", "moved", 30.0)


@pytest.mark.parametrize(("verb", "method", "state"), [
    ("activate", "ActivateDevice", "ACTIVE"),
    ("suspend", "SuspendDevice", "SUSPENDED"),
    ("retire", "RetireDevice", "RETIRED"),
])
def test_lifecycle_commands_send_reason_and_etag_and_show_the_new_state(
        cli: Cli, verb: str, method: str, state: str) -> None:
    (name,) = add_devices(cli.fake, 1)
    result = cli.ok("devices", verb, name.removeprefix("devices/"), "--reason", "maintenance", "--etag", "e7")
    (request,) = cli.fake.requests(method)
    assert (request.name, request.reason, request.etag) == (name, "maintenance", '"e7"')
    assert f"STATE         {state}" in result.stdout.splitlines()


def test_devices_delete_sends_the_etag_and_confirms_in_json(cli: Cli) -> None:
    (name,) = add_devices(cli.fake, 1)
    assert cli.json("devices", "delete", name, "--etag", "e1") == {"deleted": name}
    assert cli.fake.requests("DeleteDevice")[0].etag == '"e1"'
    assert cli.fake.devices == {}
