"""The import-layer check of `make lint` (scripts/check_layers.py) passes on the tree and catches
each kind of violation in a tree made for it."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CHECK = ROOT / "scripts" / "check_layers.py"


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=60)


def test_the_tree_keeps_its_layers():
    result = check(ROOT)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "import layers: ok"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_kind_of_violation_is_named(tmp_path):
    write(tmp_path, "schedcp/runtime/bus.py", "from schedcp.domain import policies\nimport json\n")
    write(tmp_path, "schedcp/domain/params.py", "from schedcp.runtime import errors\nfrom schedcp import DATA\n")
    write(tmp_path, "schedcp/toolchain/build.py", "def f():\n    from schedcp.cli import stack\n")
    write(tmp_path, "schedcp/cli/main.py", "from schedcp.toolchain import build\nimport harness.fleet\n")
    write(tmp_path, "services/planner/cycle.py", "from services.executor import canary\nfrom . import goals\n")
    write(tmp_path, "services/planner/goals.py", "from schedcp.v1 import goal_pb2\nfrom tests import conftest\n")
    lines = check(tmp_path).stdout.splitlines()
    assert lines[-1] == "import layers: 5 violation(s)"
    found = {line.split(": ")[0] + ": " + line.split(": ")[1].split(" (")[0] for line in lines[:-1]}
    assert found == {
        "schedcp/runtime/bus.py:1: schedcp.runtime may not import schedcp.domain.policies",
        "schedcp/toolchain/build.py:2: schedcp.toolchain may not import schedcp.cli.stack",
        "schedcp/cli/main.py:2: schedcp.cli may not import harness.fleet",
        "services/planner/cycle.py:1: services.planner may not import services.executor.canary",
        "services/planner/goals.py:2: services.planner may not import tests.conftest",
    }
