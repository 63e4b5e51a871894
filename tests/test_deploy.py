"""deploy/ checked at the schema level, since nothing here can run a kubelet, systemd as init
or a Docker engine: Kubernetes manifests against the API's schemas (kubernetes-validate),
the compose file against the compose specification (check-jsonschema's copy), systemd units
with `systemd-analyze verify`. Then what they say against the rest of the project: every
SCHEDCP_* variable they set exists and its value passes the settings' validation, and each
service gets exactly the privileges deploy/README.md's table documents (none for the central
services)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from schedcp.runtime.config import Role, known_env_vars, load_settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES_VERSION = "1.33"
CENTRAL = {"planner", "verifier", "learner"}


def documented_capabilities() -> dict[str, set[str]]:
    """Role -> capabilities (without CAP_), from the privileges table in deploy/README.md."""
    table: dict[str, set[str]] = {}
    for line in (DEPLOY / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] and cells[0].split(",")[0].strip() in {r.value for r in Role}:
            caps = set(re.findall(r"CAP_([A-Z_]+)", cells[2]))
            for role in cells[0].split(","):
                table[role.strip()] = caps
    assert set(table) == {r.value for r in Role}, f"deploy/README.md's table names {sorted(table)}"
    return table


def check_settings(env: dict[str, str], where: str) -> None:
    """The SCHEDCP_* part of an environment names real settings with valid values."""
    ours = {k: v for k, v in env.items() if k.startswith("SCHEDCP_")}
    unknown = set(ours) - set(known_env_vars())
    assert not unknown, f"{where} sets {sorted(unknown)}, which schedcp does not read"
    overrides = {k.removeprefix("SCHEDCP_").lower(): v for k, v in ours.items() if k != "SCHEDCP_CONFIG_FILE"}
    load_settings(**overrides)


# --- Kubernetes -----------------------------------------------------------------------------

def k8s_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(("path", "doc"), k8s_documents(),
                         ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in k8s_documents()])
def test_kubernetes_manifests_match_the_api_schema(path, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def pod_templates() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc["spec"]["template"]["spec"] for _, doc in k8s_documents()
            if doc["kind"] in ("Deployment", "DaemonSet")}


def test_kubernetes_gives_each_service_its_documented_privileges_and_no_more():
    documented = documented_capabilities()
    pods = pod_templates()
    containers = {c["name"]: (pod, c) for pod in pods.values() for c in pod["containers"]}
    assert set(containers) == {r.value for r in Role}, sorted(containers)
    for role, (pod, container) in containers.items():
        security = container["securityContext"]
        caps = security["capabilities"]
        assert caps["drop"] == ["ALL"] and security["allowPrivilegeEscalation"] is False, role
        assert set(caps.get("add", [])) == documented[role], role
        if role in CENTRAL:
            assert pod["securityContext"]["runAsNonRoot"] is True and not pod.get("hostPID"), role
        else:
            assert pod["hostPID"] is True, role


def test_kubernetes_settings_exist_and_are_valid():
    configmap = next(doc for _, doc in k8s_documents() if doc["kind"] == "ConfigMap")
    for name, pod in pod_templates().items():
        for container in pod["containers"]:
            env = dict(configmap["data"]) if container.get("envFrom") else {}
            env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
            env = {k: v.replace("$(NODE_IP)", "10.0.0.7") for k, v in env.items()}
            check_settings(env, f"{name}/{container['name']}")


# --- compose --------------------------------------------------------------------------------

def test_compose_file_matches_the_compose_specification():
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_jaeger_and_the_stack_with_documented_privileges():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    jaeger_ports = {p.rsplit(":", 1)[-1] for p in compose["jaeger"]["ports"]}
    assert {"4317", "16686"} <= jaeger_ports
    documented = documented_capabilities()
    for role in Role:
        service = compose[role.value]
        assert service["cap_drop"] == ["ALL"], role
        assert set(service.get("cap_add", [])) == documented[role.value], role
        assert (service["user"] != "0") == (role.value in CENTRAL), role
        check_settings(service["environment"], f"compose service {role.value}")


# --- systemd --------------------------------------------------------------------------------

def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def unit_env(settings: dict[str, list[str]]) -> dict[str, str]:
    """What the service sees: the fleet-wide file, Environment= lines, then `env` on ExecStart."""
    specifiers = {"%H": "node-17", "%d": "/run/credentials/unit", "%S": "/var/lib", "%C": "/var/cache"}
    pairs = [line for line in (DEPLOY / "systemd" / "schedcp.env").read_text().splitlines()
             if line and not line.startswith("#")]
    for value in settings.get("Environment", []):
        pairs += value.split()
    pairs += [word for word in settings["ExecStart"][0].split() if "=" in word]
    env = dict(pair.split("=", 1) for pair in pairs)
    for key, value in env.items():
        for specifier, example in specifiers.items():
            value = value.replace(specifier, example)
        env[key] = value
    return env


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian's systemd package)")
        pytest.skip("systemd-analyze is not installed")
    return found


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_units_verify_cleanly(unit, systemd_analyze, tmp_path):
    # verify insists that ExecStart's program exists: point /opt/schedcp at a stand-in tree.
    opt = tmp_path / "opt" / "schedcp"
    python = opt / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/schedcp", str(opt)))
    done = subprocess.run([systemd_analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 0 and not complaints, complaints


def test_systemd_units_have_documented_privileges_and_valid_settings():
    documented = documented_capabilities()
    assert {u.name for u in UNITS} == {f"schedcp-{r.value}.service" for r in Role}
    for unit in UNITS:
        role = unit.stem.removeprefix("schedcp-")
        settings = unit_settings(unit)
        caps = {c.removeprefix("CAP_") for c in " ".join(settings["CapabilityBoundingSet"]).split()}
        assert caps == documented[role], role
        assert settings["NoNewPrivileges"] == ["yes"], role
        if role in CENTRAL:
            assert settings["DynamicUser"] == ["yes"] and "User" not in settings, role
        check_settings(unit_env(settings), unit.name)
