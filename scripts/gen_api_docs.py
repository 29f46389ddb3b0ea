#!/usr/bin/env python3
"""Generate the API reference (Markdown per package) and an OpenAPI 3.0 document from the protos.

    python scripts/gen_api_docs.py          # write docs/api/
    python scripts/gen_api_docs.py --check  # exit 1 if what is committed in docs/api/ is stale (CI)

Input is the FileDescriptorSet that scripts/generate.py builds for Envoy (`gateway/muster.binpb`,
`buf build --as-file-descriptor-set`: imports and source info, hence the proto comments, included).
Output, for every `muster.*` package: `docs/api/<context>.md` (services, RPCs with their HTTP
mapping, messages, enums, comments, field_behavior), plus `docs/api/openapi.json` and an index.

This file is the command line; the generator is the `apidocs` package next to it (scripts/apidocs/),
and how the OpenAPI document maps the gateway is described in scripts/apidocs/openapi.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # not when loaded by path (test_api_docs.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from apidocs.model import read_descriptor_set
from apidocs.output import MARKER, package_doc
from apidocs.paths import openapi_path
from apidocs.render import render

__all__ = ["MARKER", "main", "openapi_path", "package_doc", "read_descriptor_set", "render"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DESCRIPTOR = ROOT / "gateway" / "muster.binpb"
DEFAULT_OUT = ROOT / "docs" / "api"


def _generated(out: Path) -> Iterator[Path]:
    """Files in `out` this script wrote (by their marker), to find ones no longer generated."""
    for path in sorted(out.glob("*.md")):
        if path.read_text(encoding="utf-8").startswith(MARKER):
            yield path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files in --out are stale")
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR,
                        help="FileDescriptorSet with source info (default: gateway/muster.binpb)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: docs/api)")
    args = parser.parse_args(argv)
    files = render(read_descriptor_set(args.descriptor))
    out: Path = args.out
    leftovers = [p for p in (_generated(out) if out.is_dir() else []) if p.name not in files]
    if args.check:
        stale = [name for name, text in files.items()
                 if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != text]
        stale += [p.name for p in leftovers]
        if stale:
            print(f"API docs in {out} are stale; run `python scripts/gen_api_docs.py`:\n  " + "\n  ".join(stale))
            return 1
        print(f"API docs in {out} are up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for path in leftovers:
        path.unlink()
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
