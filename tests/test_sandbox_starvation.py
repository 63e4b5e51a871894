"""A sandbox run the host starved is not judged: qemu's own CPU time per test (runner.HostUsage),
DYN009 for a timing finding from a starved test, never for anything else and never an approval,
not cached, and booted again once. Built from recorded step data: no VM."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schedcp.toolchain import runner
from schedcp.v1 import common_pb2, verdict_pb2
from services.verifier import pipeline, sandbox_stages
from services.verifier.signing import SigningKey

BOUNDS = sandbox_stages.DynamicBounds()
BASELINE = {"event": "probe", "probe": "wakeup", "samples": 2000, "p50_us": 60.0, "p99_us": 20000.0, "max_us": 30000.0}
# The rejection that started this (2026-12-05): batch, with another TCG VM beside the sandbox.
WATCHDOG = {"event": "exit", "by": "kernel", "kind_name": "error_stall", "reason": "runnable task stall",
            "msg": "watchdog failed to check in for 2.696s"}
RUNTIME_ERROR = {"event": "exit", "by": "kernel", "kind_name": "error", "reason": "runtime error",
                 "msg": "non-existent DSQ 0x1 for hog[730]"}
# Host seconds at which each test's `after-` marker arrives; the candidate is loaded at 10.
ENDS = {"latency": 12.0, "fairness": 14.0, "flood": 17.5, "forkstorm": 18.5}


def step(ejected_in: str | None = None, exit_: dict | None = None, latency_p99_us: float = 60000.0,
         fairness: float = 0.9) -> runner.StepResult:
    """A candidate's step as the runner parses it: sysfs markers, probes, exit, with host times."""
    s = runner.StepResult("c0", started=9.5)

    def add(record: dict, at: float) -> None:
        s.records.append(record)
        s.record_times.append(at)

    add({"event": "enabled", "ops": "schedcp_batch"}, 9.9)
    add({"event": "sysfs", "when": "loaded", "state": "enabled", "ops": "schedcp_batch"}, 10.0)
    probes = {"latency": {"event": "probe", "probe": "wakeup", "samples": 2000, "p50_us": 3000.0,
                          "p99_us": latency_p99_us, "max_us": latency_p99_us},
              "fairness": {"event": "probe", "probe": "fairness", "hogs": 4, "min_max_ratio": fairness},
              "flood": {"event": "probe", "probe": "fairness", "hogs": 32, "min_max_ratio": 0.7},
              "forkstorm": {"event": "probe", "probe": "forkstorm", "forks": 450, "failed": 0}}
    state = "enabled"
    for test, end in ENDS.items():
        add(probes[test], end - 0.1)
        if test == ejected_in:
            state = "disabled"
        add({"event": "sysfs", "when": f"after-{test}", "state": state, "ops": ""}, end)
    add({"event": "loader_exit", "status": 2 if exit_ else 0}, 18.8)
    add(exit_ or {"event": "exit", "by": "signal", "kind_name": "unregistered"}, 18.8)
    add({"event": "sysfs", "when": "unloaded", "state": "disabled", "ops": ""}, 19.0)
    return s


def usage(stalls: tuple[tuple[float, float], ...] = (), share: float = 1.0) -> runner.HostUsage:
    """qemu's CPU time sampled every 0.1 s for 20 s: `share` of a CPU, none within `stalls`."""
    samples, cpu = [], 0.0
    for i in range(201):
        t = i / 10
        if i and not any(a < t <= b for a, b in stalls):
            cpu += share * 0.1
        samples.append((t, cpu))
    return runner.HostUsage(samples, needs=1.0)


def judge(s: runner.StepResult, host: runner.HostUsage) -> verdict_pb2.StageResult:
    vm = runner.VmRun("6.18", True, True, 20.0, {"c0": s}, "", host)
    candidate = sandbox_stages.Candidate("batch", b"", {}, "schedcp_batch")
    result = sandbox_stages.judge(vm, "c0", candidate, BOUNDS, BASELINE, time.monotonic())
    assert result.kernel_verifier.status == common_pb2.STAGE_STATUS_SUCCEEDED
    return result.dynamic


def rules(result: verdict_pb2.StageResult) -> list[str]:
    return [f.rule_id for f in result.findings]


@pytest.mark.parametrize(("multithreaded", "icount", "extra", "needs"), [
    (False, None, [], 1.0),  # the default: the guest's clock is the host's (icount livelocks it)
    (False, runner.ICOUNT, ["-icount", "shift=3,sleep=off"], 1.0),
    (True, runner.ICOUNT, [], 2.0),  # icount needs one thread
])
def test_qemu_runs_with_icount_only_when_asked_and_single_threaded(monkeypatch, tmp_path, multithreaded, icount,
                                                                   extra, needs):
    booted = {}

    def fake_boot(accel, kernel, initrd, timeout_s, extra_args, needs_cpus):
        booted.update(accel=accel, extra=extra_args, needs=needs_cpus)
        lines = [(1.0, "@@booted\n"), (1.5, "@@step s\n"), (2.0, '{"event":"probe"}\n'), (2.5, "@@done\n")]
        return lines, runner.HostUsage([(0.0, 0.0), (3.0, 2.7)], needs_cpus)

    class FakeToolchain:
        def loader(self, static: bool):
            (tmp_path / "loader").write_bytes(b"")
            return tmp_path / "loader"

        def probes(self):
            return {}

    monkeypatch.setattr(runner, "_boot", fake_boot)
    monkeypatch.setattr(runner, "accelerator", lambda kernel: None)
    monkeypatch.setattr(runner.shutil, "which", lambda name: "/usr/bin/" + name)
    kernel = type("K", (), {"release": "6.18"})()
    options = {"icount": icount} if icount else {}
    vm = runner.run(runner.Plan(), kernel, FakeToolchain(), multithreaded=multithreaded, **options)
    assert booted["extra"] == extra and booted["needs"] == needs
    assert booted["accel"] == ("tcg,thread=multi" if multithreaded else "tcg,thread=single")
    assert vm.finished and vm.step("s").record_times == [2.0] and vm.step("s").started == 1.5
    assert vm.usage.share(0, 3) == pytest.approx(0.9)


def test_the_console_is_timestamped_and_cpu_sampled_and_a_hang_times_out(monkeypatch, tmp_path):
    # A stand-in for qemu: busy for a moment, prints the markers, then hangs asleep (it waits on
    # no run queue, so the timeout is not extended). Busy for about 0.1 s here: the CPU time read
    # from /proc/PID/stat counts whole clock ticks (10 ms), and the 15 ms this loop once took here
    # read 0 ticks on a faster machine.
    fake = tmp_path / "qemu"
    fake.write_text("#!/bin/sh\necho @@booted\ni=0; while [ $i -lt 150000 ]; do i=$((i+1)); done\n"
                    "echo @@step s\necho '{\"event\":\"probe\"}'\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(runner, "QEMU", str(fake))
    kernel = type("K", (), {"vmlinuz": tmp_path / "k"})()
    started = time.monotonic()
    lines, host = runner._boot("tcg,thread=single", kernel, tmp_path / "initrd", 3.0)
    assert 3.0 <= time.monotonic() - started < 8
    assert [line.strip() for _, line in lines] == ["@@booted", "@@step s", '{"event":"probe"}']
    assert lines[0][0] <= lines[1][0] <= lines[2][0] < 3.0
    assert len(host.samples) >= 10 and host.samples[-1][1] > 0  # the busy loop's CPU time
    assert host.longest_stall(lines[2][0], host.samples[-1][0]) > 0.5  # then asleep
    assert host.waited_s < 3.0


def test_host_usage_is_cpu_time_over_wall_time_with_the_longest_stall():
    host = usage(stalls=((4.0, 6.5),), share=0.8)
    assert host.share(0, 4) == pytest.approx(0.8)
    assert host.share(4, 6.5) == pytest.approx(0.0)
    assert host.share(3, 7) == pytest.approx(0.8 * 1.5 / 4)
    assert host.longest_stall(0, 20) == pytest.approx(2.5)
    assert host.longest_stall(7, 20) == 0
    assert host.share(5, 5) is None and runner.HostUsage().share(0, 1) is None


def test_a_watchdog_ejection_while_the_host_stalled_qemu_is_not_judged():
    result = judge(step("flood", WATCHDOG), usage(stalls=((14.5, 17.2),)))
    assert rules(result)[:2] == ["DYN009", "DYN001"], result.findings
    assert result.status == common_pb2.STAGE_STATUS_FAILED
    assert "none for 2.7 s during the flood test" in result.findings[0].message
    assert result.measurements["host_stall_max_s"] == pytest.approx(2.7)
    results = [result]
    assert pipeline._inconclusive(results)
    assert pipeline.summarise(False, results).startswith("rejected at dynamic: DYN009: the host starved")


def test_the_same_ejection_with_qemu_on_a_whole_cpu_is_a_rejection_that_sticks():
    result = judge(step("flood", WATCHDOG), usage())
    assert rules(result) == ["DYN001"], result.findings
    assert result.measurements["host_cpu_min"] == pytest.approx(1.0, abs=0.01)
    assert not pipeline._inconclusive([result])


def test_a_stall_just_before_the_test_counts_for_the_watchdog_that_looks_back():
    # The watchdog looks back a whole timeout: a stall at the end of the fairness test fires it
    # early in the flood test.
    result = judge(step("flood", WATCHDOG), usage(stalls=((12.8, 14.0),)))
    assert rules(result)[0] == "DYN009"


def test_a_runtime_error_is_judged_however_starved_the_vm_was():
    result = judge(step("latency", RUNTIME_ERROR), usage(share=0.1))
    assert rules(result) == ["DYN001"], result.findings
    assert not pipeline._inconclusive([result])


def test_latency_and_fairness_findings_from_a_starved_test_are_not_judged():
    slow = judge(step(latency_p99_us=900000.0), usage(share=0.3))
    assert rules(slow)[:2] == ["DYN009", "DYN003"]
    unfair = judge(step(fairness=0.3), usage(stalls=((12.5, 13.5),)))
    assert rules(unfair)[:2] == ["DYN009", "DYN002"]


def test_starvation_in_another_test_does_not_excuse_a_finding():
    # qemu stalled during the flood; the unfairness was measured before, on a whole CPU.
    result = judge(step(fairness=0.3), usage(stalls=((15.0, 17.0),)))
    assert rules(result) == ["DYN002"], result.findings


def test_a_pass_under_a_starving_host_stays_a_pass():
    # Starvation makes a TCG guest look worse, never better: a clean run is still approved.
    result = judge(step(), usage(stalls=((10.5, 13.0), (15.0, 17.0)), share=0.3))
    assert rules(result) == [] and result.status == common_pb2.STAGE_STATUS_SUCCEEDED
    assert result.measurements["host_cpu_min"] < 0.3 and result.measurements["host_stall_max_s"] >= 2


def test_without_host_samples_nothing_is_excused():
    result = judge(step("flood", WATCHDOG), runner.HostUsage())
    assert rules(result) == ["DYN001"]


def outcome(*rule_ids: str) -> sandbox_stages.SandboxResult:
    ok = verdict_pb2.StageResult(stage=verdict_pb2.VERIFY_STAGE_KERNEL_VERIFIER,
                                 status=common_pb2.STAGE_STATUS_SUCCEEDED)
    dynamic = verdict_pb2.StageResult(stage=verdict_pb2.VERIFY_STAGE_DYNAMIC,
                                      status=common_pb2.STAGE_STATUS_FAILED if rule_ids else
                                      common_pb2.STAGE_STATUS_SUCCEEDED,
                                      findings=[verdict_pb2.Finding(rule_id=r, message=r) for r in rule_ids])
    return sandbox_stages.SandboxResult(ok, dynamic, "schedcp_batch")


@pytest.mark.parametrize(("runs", "boots", "final"), [
    ([("DYN009", "DYN001"), ()], 2, []),  # starved once: booted again, judged on the second run
    ([("DYN009", "DYN001"), ("DYN009", "DYN001")], 2, ["DYN009", "DYN001"]),  # twice: inconclusive
    ([("DYN001",)], 1, ["DYN001"]),  # a real rejection is not retried
    ([()], 1, []),
])
async def test_a_starved_sandbox_run_is_booted_again_once(monkeypatch, runs, boots, final):
    calls = []

    def fake_run(candidates, kernel, toolchain, bounds):
        calls.append(candidates[0].name)
        return {candidates[0].name: outcome(*runs[len(calls) - 1])}

    monkeypatch.setattr(sandbox_stages, "run", fake_run)
    verifier = pipeline.Pipeline(SigningKey(Ed25519PrivateKey.generate()), None, None, pipeline.PipelineOptions())
    result = await verifier._vm_job(sandbox_stages.Candidate("batch", b""), None)
    assert len(calls) == boots
    assert rules(result.dynamic) == final
    assert not verifier._vm_slots.locked()
