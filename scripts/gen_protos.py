"""Generate the Python code for protos/schedcp/v1 into the schedcp package.

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: the repository root)

The output lands in OUT_DIR/schedcp/v1/. tests/test_protos.py runs this into a temporary
directory and fails when the committed files differ, so run `make protos` after editing a
.proto file and commit the result.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("schedcp") / "v1"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every contract file; return the generated files."""
    target = out_dir / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated from protos/schedcp/v1 by scripts/gen_protos.py; do not edit."""\n')
    return sorted(p for p in target.iterdir() if p.suffix in (".py", ".pyi") and p.name != "__init__.py")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    files = generate(out)
    print(f"generated {len(files)} files in {out / PACKAGE_DIR}")
