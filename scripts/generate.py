#!/usr/bin/env python3
"""Regenerate everything derived from proto/: Python stubs (+ mypy stubs) and Envoy's descriptor set.

    python scripts/generate.py          # write the generated files
    python scripts/generate.py --check  # exit 1 if what is committed is stale (CI)

buf builds one image (imports included) from the workspace in buf.yaml; grpc_tools' protoc reads
that image, so buf is the only thing that parses .proto files. googleapis stubs are not generated:
their `_pb2` modules come from the googleapis-common-protos wheel.
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PY_OUT = ROOT  # proto/muster/x/v1/y.proto -> muster/x/v1/y_pb2.py
DESCRIPTOR = ROOT / "gateway" / "muster.binpb"


def _bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def generate(out_root: Path, descriptor: Path) -> list[Path]:
    """Generate into out_root; returns the generated files relative to out_root."""
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    descriptor.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_bin("buf"), "build", "--as-file-descriptor-set", "-o", str(descriptor)],
                   cwd=ROOT, check=True)
    out_root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"--descriptor_set_in={descriptor}",
         f"--plugin=protoc-gen-mypy={_bin('protoc-gen-mypy')}",
         f"--plugin=protoc-gen-mypy_grpc={_bin('protoc-gen-mypy_grpc')}",
         f"--python_out={out_root}", f"--grpc_python_out={out_root}",
         f"--mypy_out=quiet:{out_root}", f"--mypy_grpc_out=quiet:{out_root}", *protos],
        check=True,
    )
    generated = []
    for proto in protos:
        package = Path(proto).parent.parts  # ("muster", "registry", "v1"): each needs an __init__.py
        for depth in range(1, len(package) + 1):
            (out_root.joinpath(*package[:depth]) / "__init__.py").touch(exist_ok=True)
        stem = Path(proto).with_suffix("").as_posix()
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            generated.append(Path(stem + suffix))
    return generated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed output is stale")
    args = parser.parse_args()
    if not args.check:
        for old in PY_OUT.glob("muster/*/v*/*_pb2*.py*"):
            old.unlink()
        generate(PY_OUT, DESCRIPTOR)
        print(f"generated Python stubs under {PY_OUT / 'muster'} and {DESCRIPTOR.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        files = generate(tmp_root / "py", tmp_root / "muster.binpb")
        stale = [str(f) for f in files if not (PY_OUT / f).exists()
                 or not filecmp.cmp(tmp_root / "py" / f, PY_OUT / f, shallow=False)]
        committed = {p.relative_to(PY_OUT) for p in PY_OUT.glob("muster/*/v*/*_pb2*.py*")}
        stale += [str(f) for f in committed - set(files)]
        if not DESCRIPTOR.exists() or not filecmp.cmp(tmp_root / "muster.binpb", DESCRIPTOR, shallow=False):
            stale.append(str(DESCRIPTOR.relative_to(ROOT)))
    if stale:
        print("generated files are stale; run `python scripts/generate.py`:\n  " + "\n  ".join(stale))
        return 1
    print("generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
