"""schedcp installs as a package and runs with no checkout around it: the wheel built from this
tree, installed into a fresh virtualenv in a temporary directory, brings up the local stack,
verifies a library policy by name in the sandbox micro-VM and stops it again.

The virtualenv gets its dependencies from the package index (pip's cache makes that quick after
the first run); the sandbox toolchain comes from the user's cache, as on any installed host.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, service_env

PIP = ["-m", "pip", "--disable-pip-version-check", "--quiet"]


def run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel of this tree installed in it; its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, *PIP, "wheel", "--no-deps", "--wheel-dir", str(tmp / "dist"), str(ROOT)], timeout=300)
    [wheel] = (tmp / "dist").glob("schedcp-*.whl")
    run([sys.executable, "-m", "venv", str(tmp / "venv")], timeout=120)
    run([str(tmp / "venv" / "bin" / "python"), *PIP, "install", str(wheel)], timeout=600)
    return tmp / "venv" / "bin"


def outside_checkout(tmp_path: Path) -> dict[str, str]:
    """Environment and working directory that cannot reach this checkout's sources."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = service_env(None, tmp_path / "data")
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if str(ROOT) not in p)
    return {"env": env, "cwd": work}


def test_the_installed_package_is_self_contained(installed, tmp_path):
    where = outside_checkout(tmp_path)
    probe = ("import json, schedcp, services.observer.bpf as bpf\n"
             "from schedcp.domain import policies\nfrom schedcp.toolchain import build\n"
             "print(json.dumps({'package': schedcp.__file__, 'library': sorted(m.name for m in policies.library()),"
             " 'loader': build.LOADER_SRC.is_file(), 'kernels': len(build.catalogue()),"
             " 'probes': sorted(p.name for p in build.PROBES_SRC.glob('*.c')), 'bcc': bpf.PROGRAM.is_file()}))")
    found = json.loads(run([str(installed / "python"), "-c", probe], timeout=60, **where).stdout)
    assert Path(found["package"]).is_relative_to(installed.parent), found["package"]
    expected = sorted(m.stem.removesuffix(".bpf") for m in (ROOT / "policies").glob("*/*.toml"))
    assert found["library"] == expected
    assert found["loader"] and found["kernels"] >= 1 and found["bcc"]
    assert found["probes"] == sorted(p.name for p in (ROOT / "schedcp" / "toolchain" / "probes").glob("*.c"))
    # The development harness stays out of the wheel.
    harness = subprocess.run([str(installed / "python"), "-c", "import harness"], capture_output=True, **where)
    assert harness.returncode != 0


@pytest.mark.timeout(900)  # a verification in the micro-VM, about a minute under TCG
def test_up_verify_down_from_the_installed_package(installed, tmp_path):
    where = outside_checkout(tmp_path)
    schedcp = str(installed / "schedcp")
    try:
        run([schedcp, "up", "--detach"], timeout=180, **where)
        statuses = json.loads(run([schedcp, "--json", "status"], timeout=60, **where).stdout)
        assert {s["health"] for s in statuses} == {"SERVING"}, statuses
        verdict = run([schedcp, "verify", "fifo", "--param", "slice_us=3000"], timeout=600, **where).stdout
        assert verdict.startswith("approved: passed static, compile, kernel verifier, dynamic"), verdict
    finally:
        down = subprocess.run([schedcp, "down"], capture_output=True, text=True, timeout=120, **where)
    assert down.returncode == 0 and "stopped observer, planner, executor, verifier, learner" in down.stdout, down
