"""The sched_ext toolchain end to end: every library policy compiled against the sandbox
kernel's BTF, loaded in one boot of the micro-VM (enabled, ops named, a probe run, unloaded);
a starving scheduler ejected by the watchdog; programs the kernel verifier must refuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schedcp.domain import policies
from schedcp.toolchain import build, runner

HERE = Path(__file__).resolve().parent
BAD = HERE / "sched_ext"
LIBRARY = [m for m in policies.library() if m.kind == "sched_ext"]
# Parameters for the boot: latency_boost boosts the probe's sleeper, not its hogs.
PARAMS = {"latency_boost": {"boost_comm": "probe-wakeup"}, "vtime": {"slice_us": 2000}}


@pytest.fixture(scope="module")
def toolchain() -> build.Toolchain:
    return build.Toolchain()


@pytest.fixture(scope="module")
def vm(toolchain) -> runner.VmRun:
    kernel = toolchain.kernel()
    plan = runner.Plan()
    for meta in LIBRARY:
        obj = toolchain.compile_policy(policies.source_of(meta), kernel)
        path = plan.add_file(f"/art/{obj.name}", obj.read_bytes())
        plan.add(meta.name, runner.load_and_hold(path, PARAMS.get(meta.name), hold="/bin/probe-wakeup 2 1"))
    vtime = plan.files["/art/vtime.bpf.o"]
    plan.add_file("/art/vtime2.bpf.o", vtime)
    plan.add("probes-under-vtime", runner.load_and_hold(
        "/art/vtime2.bpf.o", hold="/bin/probe-fairness 4 1\n/bin/probe-forkstorm 1"))
    for bad in ("starve", "oob", "loop"):
        obj = toolchain.compile_policy(BAD / f"{bad}.bpf.c", kernel, out_dir=toolchain.root / "objs" / "tests")
        path = plan.add_file(f"/art/{obj.name}", obj.read_bytes())
        plan.add(bad, runner.load_and_hold(path, hold="sleep 6" if bad == "starve" else "true"))
    return runner.run(plan, kernel, toolchain, timeout_s=600)


def test_the_vm_boots_the_catalogue_kernel_and_finishes(vm):
    assert vm.booted and vm.finished and not vm.crashed, vm.console[-3000:]
    assert vm.kernel_release == build.find_kernel().release


@pytest.mark.parametrize("meta", LIBRARY, ids=[m.name for m in LIBRARY])
def test_every_library_policy_loads_runs_and_unloads(vm, meta):
    step = vm.step(meta.name)
    loaded, unloaded = step.events("sysfs")
    assert (loaded["state"], loaded["ops"]) == ("enabled", meta.ops_name), step
    assert step.first("enabled")["ops"] == meta.ops_name
    probe = step.first("probe")
    # The sleeper made progress and the probe finished (ljf favours the hogs by design, so no
    # latency bound here: that is the bench's business).
    assert probe and probe["samples"] > 10, step
    exit_ = step.first("exit")
    assert (exit_["by"], exit_["kind_name"]) == ("signal", "unregistered"), exit_
    assert step.first("loader_exit")["status"] == 0
    assert unloaded["state"] == "disabled"


def test_probes_run_under_a_policy(vm):
    step = vm.step("probes-under-vtime")
    fairness = next(r for r in step.records if r.get("probe") == "fairness")
    forks = next(r for r in step.records if r.get("probe") == "forkstorm")
    # Four equal hogs on two CPUs for a second under a fair scheduler: each gets a fair part.
    assert fairness["min_max_ratio"] > 0.5, fairness
    assert forks["forks"] > 10 and forks["failed"] == 0, forks
    assert step.events("sysfs")[-1]["state"] == "disabled"


def test_a_starving_scheduler_is_ejected_by_the_watchdog(vm):
    step = vm.step("starve")
    exit_ = step.first("exit")
    assert exit_ and exit_["by"] == "kernel", step
    assert exit_["kind_name"] == "error_stall" and exit_["reason"], exit_
    assert step.first("loader_exit")["status"] == 2
    assert step.events("sysfs")[-1]["state"] == "disabled"


@pytest.mark.parametrize(("program", "words"), [
    ("oob", "invalid access to map value"),
    ("loop", "is too complex"),  # the verifier gives up proving the loop ends
])
def test_the_kernel_verifier_refuses_bad_programs_with_its_log(vm, program, words):
    step = vm.step(program)
    error = step.first("error")
    assert error and error["stage"] == "load", step
    assert words in error["log"], error["log"][-2000:]
    assert step.first("loader_exit")["status"] == 3
    assert step.events("sysfs")[0]["state"] == "disabled"


def test_library_metadata_matches_the_code():
    names = {m.name for m in policies.library()}
    assert {"vtime", "fifo", "latency_boost", "batch", "ljf"} <= names
    assert {"batch_idle_cgroup", "batch_sched_idle", "latency_slice"} <= names


def test_metadata_errors_name_the_file_and_the_problem(tmp_path):
    (tmp_path / "sched_ext").mkdir()
    broken = tmp_path / "sched_ext" / "broken.toml"
    broken.write_text(Path(policies.LIBRARY / "sched_ext" / "fifo.toml").read_text().replace(
        'name = "fifo"', 'name = "broken"').replace("default = 5000", "default = 500000"))
    (tmp_path / "sched_ext" / "broken.bpf.c").write_text(
        (policies.LIBRARY / "sched_ext" / "fifo.bpf.c").read_text())
    with pytest.raises(policies.LibraryError, match=r"(?s)broken.toml.*min <= default <= max"):
        policies.library(tmp_path)


def test_a_checksum_mismatch_says_what_to_do(tmp_path):
    source = tmp_path / "kernel.deb"
    source.write_bytes(b"not the pinned kernel")
    with pytest.raises(build.BuildError, match=r"checksum mismatch.*expected sha256 0+.*retry, or pin"):
        build._fetch(source.as_uri(), "0" * 64, tmp_path / "cache" / "kernel.deb")
    assert not (tmp_path / "cache" / "kernel.deb").exists()


def test_missing_qemu_says_how_to_get_it(monkeypatch, toolchain):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == runner.QEMU else real_which(name))
    with pytest.raises(build.BuildError, match=r"qemu-system-x86_64 not found: run `make install`"):
        runner.run(runner.Plan(), toolchain.kernel(), toolchain)


@pytest.mark.skipif(Path("/sys/kernel/sched_ext").exists(),
                    reason="this host has sched_ext: the test must not load a scheduler on the host")
def test_the_host_loader_reports_why_a_kernel_without_sched_ext_refuses(toolchain):
    import json
    import subprocess

    obj = toolchain.compile_policy(policies.source_of(policies.load(policies.LIBRARY / "sched_ext" / "fifo.toml")),
                                   toolchain.kernel())
    result = subprocess.run([str(toolchain.loader(static=False)), str(obj)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 3
    error = json.loads(result.stdout.splitlines()[0])
    assert error["stage"] == "load" and "scx_bpf_" in error["log"], error


def test_the_catalogue_finds_a_kernel_by_release_and_by_btf_digest(toolchain):
    kernel = toolchain.kernel()
    assert build.find_kernel(btf_sha256=kernel.btf_sha256).release == kernel.release
    assert build.find_kernel(release=kernel.release).btf_sha256 == kernel.btf_sha256
    with pytest.raises(build.BuildError, match="no sandbox kernel"):
        build.find_kernel(release="2.6.32")
