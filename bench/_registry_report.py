"""Results as rows and the ratios the benchmark reports against its targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench._load import LoadResult

if TYPE_CHECKING:
    from bench._registry_scenarios import Scenario

TARGET_GET_VS_ECHO = 0.6
TARGET_REST_VS_GRPC = 0.8

COLUMNS = (("scenario", "scenario"), ("concurrency", "conc"), ("client", "client"), ("rps", "req/s"),
           ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
           ("errors", "errors"), ("client_cpu_pct", "client%"), ("registry_cpu_pct", "registry%"),
           ("postgres_cpu_pct", "pg%"), ("envoy_cpu_pct", "envoy%"), ("echo_cpu_pct", "echo%"),
           ("other_cpu_pct", "other%"))


def result_row(s: Scenario, r: LoadResult) -> dict[str, Any]:
    summary = r.summary()
    summary.update(scenario=s.name, client_kind=s.client)
    cpu = summary.get("cpu_pct") or {}
    for name in ("registry", "postgres", "envoy", "echo", "machine"):
        summary[f"{name}_cpu_pct"] = cpu.get(name)
    if "machine" in cpu and summary.get("client_cpu_pct") is not None:
        ours = sum(v for k, v in cpu.items() if k != "machine") + summary["client_cpu_pct"]
        summary["other_cpu_pct"] = round(max(0.0, cpu["machine"] - ours), 1)  # not this benchmark's processes
    return summary


def ratios(rows: Sequence[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    def rps(name: str, client: str) -> float | None:
        for row in rows:
            if row["scenario"] == name and row["client_kind"] == client and row["concurrency"] == top:
                value = row["rps"]
                return float(value) if row["requests"] else None
        return None

    def ratio(label: str, num: tuple[str, str], den: tuple[str, str], target: float | None) -> dict[str, Any]:
        a, b = rps(*num), rps(*den)
        value = round(a / b, 3) if a is not None and b else None
        return {"ratio": label, "value": value, "target": target,
                "meets_target": None if value is None or target is None else value >= target,
                "numerator": f"{num[0]} [{num[1]}]@{top}", "denominator": f"{den[0]} [{den[1]}]@{top}"}

    out = [ratio(f"GetDevice@{top} / echo@{top} (grpcio client)", ("grpc GetDevice", "grpcio"),
                 ("echo direct", "grpcio"), TARGET_GET_VS_ECHO)]
    if rps("echo direct", "h2load") is not None:
        out.append(ratio(f"GetDevice@{top} / echo@{top} (h2load client)", ("grpc GetDevice", "h2load"),
                         ("echo direct", "h2load"), TARGET_GET_VS_ECHO))
    for client in ("h2load", "httpx"):
        if rps("REST GetDevice via Envoy", client) is not None:
            out.append(ratio(f"REST GetDevice@{top} via Envoy [{client}] / gRPC GetDevice@{top} direct [grpcio]",
                             ("REST GetDevice via Envoy", client), ("grpc GetDevice", "grpcio"), TARGET_REST_VS_GRPC))
    if rps("REST GetDevice via Envoy", "h2load") is not None and rps("grpc GetDevice", "h2load") is not None:
        out.append(ratio(f"REST GetDevice@{top} via Envoy [h2load] / gRPC GetDevice@{top} direct [h2load]",
                         ("REST GetDevice via Envoy", "h2load"), ("grpc GetDevice", "h2load"), TARGET_REST_VS_GRPC))
    out.append(ratio(f"gRPC GetDevice@{top} via Envoy / direct (grpcio)", ("grpc GetDevice via Envoy", "grpcio"),
                     ("grpc GetDevice", "grpcio"), None))
    return [r for r in out if r["value"] is not None]
