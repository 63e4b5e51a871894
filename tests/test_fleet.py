"""The fleet harness's parts that need no VM (`make e2e` runs the rest, in CI after the tests):
the in-VM agent's answers, the work directory's guard, and restarting one child of a local
stack, as the fault drills do."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from harness import fleet, fleet_agent
from harness.fleet import FORWARD_TAKEN, WORK_MARKER, Fleet, FleetError
from schedcp.cli.stack import NATS, LocalStack, ephemeral_env
from schedcp.runtime.config import Settings, env_var
from schedcp.runtime.errors import StartupError
from schedcp.toolchain import runner


def test_the_agents_top_names_the_process_that_used_the_cpu():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    idle = subprocess.Popen(["sleep", "5"])
    try:
        # Every process ranked: on a busy host others may use more CPU than the test's own loop,
        # and how much the loop gets depends on them; that it outranks a sleeper does not.
        ranked = fleet_agent.top(1.0, count=100_000)
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
    percent = {name.split()[0]: pct for name, pct in ranked}
    label = next(name for name, _ in ranked if name.startswith(f"{busy.pid} "))
    assert "time.time()" in label, ranked
    assert percent[str(busy.pid)] > percent[str(idle.pid)] == 0, ranked


def test_the_agent_refuses_unknown_roles_and_commands():
    supervisor = fleet_agent.Supervisor.__new__(fleet_agent.Supervisor)
    supervisor.config = {"roles": {"executor": {}}}
    assert fleet_agent.answer(supervisor, {"cmd": "kill", "role": "planner"}) == {"error": "unknown role 'planner'"}
    assert fleet_agent.answer(supervisor, {"cmd": "reboot"}) == {"error": "unknown command 'reboot'"}
    # A workload's log is readable by its name; no other command takes one.
    assert fleet_agent.answer(supervisor, {"cmd": "start", "role": "workload-0"}) == {
        "error": "unknown role 'workload-0'"}
    assert "log" in fleet_agent.answer(supervisor, {"cmd": "log", "role": "workload-0", "lines": 1})


def test_a_failing_request_is_an_error_answer_and_the_agent_serves_on(monkeypatch):
    monkeypatch.setattr(fleet_agent, "STOP_GRACE_S", 0.5)
    supervisor = fleet_agent.Supervisor.__new__(fleet_agent.Supervisor)
    supervisor.config = {"roles": {"executor": {}}}
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(flush=True)\ntime.sleep(30)"],
                                stdout=subprocess.PIPE)
    supervisor.procs = {"executor": stubborn}
    try:
        stubborn.stdout.readline()  # its handler is in place
        answer = fleet_agent.reply(supervisor, '{"cmd": "kill", "role": "executor", "signal": 15}')
        assert answer == {"error": f"executor (pid {stubborn.pid}) still runs 0.5 s after signal 15"}
        assert fleet_agent.reply(supervisor, "not json")["error"].startswith("JSONDecodeError")
        assert fleet_agent.reply(supervisor, '["kill"]') == {"error": "ValueError: a request is a JSON object"}
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_fleet_run_empties_only_its_own_work_directory(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FleetError, match="not a previous fleet run's directory"):
        Fleet(foreign, ["vm-a"])._fresh_work_dir()
    assert (foreign / "keep.txt").read_text() == "mine"
    previous = tmp_path / "run"
    previous.mkdir()
    (previous / WORK_MARKER).write_text("")
    (previous / "old.log").write_text("old")
    Fleet(previous, ["vm-a"])._fresh_work_dir()
    assert [p.name for p in previous.iterdir()] == [WORK_MARKER]


def test_qemu_says_so_when_a_forwarded_port_is_taken():
    """The words the fleet reboots on are this qemu's own."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        netdev = f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22"
        run = subprocess.run([runner.QEMU, "-nodefaults", "-display", "none", "-netdev", netdev,
                              "-device", "virtio-net-pci,netdev=net0"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and FORWARD_TAKEN in run.stderr, run.stderr


class _VmOnPorts:
    """A host VM as far as its forwards go: it powers off at once, with qemu's words on its
    console, when one of its host ports is in `taken`."""

    taken: set[int] = set()

    def __init__(self, kernel, image, files, forwards, console, memory_mb) -> None:
        self.failed = bool(self.taken & set(forwards))
        console.write_text(f"qemu: -netdev user: {FORWARD_TAKEN} 'tcp:...'\n" if self.failed else "booting\n")

    def __enter__(self):
        return self

    def wait(self, timeout_s: float) -> int | None:
        return 1 if self.failed else None

    def __exit__(self, *exc) -> None:
        pass


def test_a_host_whose_forwarded_port_was_taken_boots_again_on_fresh_ports(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "HostVm", _VmOnPorts)
    harness = Fleet(tmp_path, ["vm-a"], progress=lambda _: None)
    harness._boot_image = (None, None)
    monkeypatch.setattr(harness, "_guest_files", lambda host: {})
    [host] = harness.hosts
    _VmOnPorts.taken = set(host.ports.values())
    harness._boot(host)
    assert host.vm.wait(0) == 1
    assert harness._boot_again_if_a_port_was_taken(host)
    assert host.vm.wait(0) is None and not _VmOnPorts.taken & set(host.ports.values())
    # Powered off for another reason (no forwarding error on its console): no second boot.
    host.console.write_text("Kernel panic\n")
    assert not harness._boot_again_if_a_port_was_taken(host)


def test_a_host_is_booted_again_only_a_bounded_number_of_times(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "HostVm", _VmOnPorts)
    harness = Fleet(tmp_path, ["vm-a"], progress=lambda _: None)
    harness._boot_image = (None, None)
    monkeypatch.setattr(harness, "_guest_files", lambda host: {})
    monkeypatch.setattr(fleet, "free_port", lambda: 1)  # every fresh port is taken too
    [host] = harness.hosts
    _VmOnPorts.taken = {1, *host.ports.values()}
    harness._boot(host)
    reboots = 0
    while harness._boot_again_if_a_port_was_taken(host):
        reboots += 1
    assert reboots == fleet.BOOT_ATTEMPTS - 1 and host.boots == fleet.BOOT_ATTEMPTS


def test_a_stack_restarts_its_nats_server_on_the_same_port_and_store(tmp_path):
    addresses = ephemeral_env()
    settings = Settings(data_dir=tmp_path / "data", nats_url=addresses[env_var("nats_url")],
                        **{name.removeprefix("SCHEDCP_").lower(): value for name, value in addresses.items()
                           if name.endswith("_ADDR")})
    stack = LocalStack(settings)
    port = int(settings.nats_url.rsplit(":", 1)[1])
    try:
        asyncio.run(stack.start(roles=()))
        before = next(c for c in stack.running() if c.name == NATS)
        after = asyncio.run(stack.restart(NATS))
        assert after.pid != before.pid and not before.alive() and after.alive()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert conn.recv(4) == b"INFO"  # the new server answers where the old one did
        assert [c.name for c in stack.running()].count(NATS) == 1
        with pytest.raises(StartupError, match="was not started by this process"):
            asyncio.run(LocalStack(settings).restart(NATS))
    finally:
        stack.stop()


def test_the_fleets_central_stack_stays_in_the_harness_session(tmp_path):
    # So in the VMs' autogroup: a nats-server restarted into a new session, beside the VMs,
    # once took 30 s to listen in `make e2e` (docs/decisions.md, 34).
    stack = Fleet(tmp_path / "run", ["vm-a"]).stack
    child = stack._spawn("child", [sys.executable, "-c", "import time; time.sleep(60)"], {})
    try:
        assert os.getsid(child.pid) == os.getsid(0) and os.getpgid(child.pid) == child.pid
    finally:
        stack._terminate([child])


def test_the_e2e_report_gives_each_guard_its_interval_and_margin():
    from harness.e2e import CycleRun, canary_margins
    from schedcp.v1 import common_pb2, cycle_pb2, deployment_pb2, goal_pb2

    wait = common_pb2.MetricSpec(name="runq_latency_p99_us", direction=common_pb2.DIRECTION_LOWER_IS_BETTER)
    share = common_pb2.MetricSpec(name="cpu_share", direction=common_pb2.DIRECTION_HIGHER_IS_BETTER,
                                  groups=[common_pb2.GroupMatcher(comm="stress-ng")])
    goal = goal_pb2.OptimizationGoal(guards=[goal_pb2.GuardConstraint(
        metric=share, comparison=goal_pb2.COMPARISON_AT_LEAST, ratio_to_baseline=0.9)])
    judged = deployment_pb2.DeploymentEvent(metrics=[
        deployment_pb2.MetricComparison(metric=wait, baseline=400, observed=200, improvement=0.5,
                                        improvement_low=0.3, improvement_high=0.7, rounds=3, confidence=0.95),
        deployment_pb2.MetricComparison(metric=share, baseline=1.0, observed=0.95, improvement=-0.05,
                                        improvement_low=-0.08, improvement_high=-0.02, rounds=3, confidence=0.95,
                                        satisfied=True)])
    run = CycleRun("h", [cycle_pb2.CycleEvent(goal=goal), cycle_pb2.CycleEvent(deployment=judged)])

    success, guard = canary_margins(run)
    assert success["interval"] == pytest.approx((0.3, 0.7)) and "limit" not in success
    assert guard["interval"] == pytest.approx((0.92, 0.98))
    assert guard["margin"] == pytest.approx(0.92 / 0.9 - 1)
    assert "limit x0.9: margin +2.2%" in guard["text"]
    assert canary_margins(CycleRun("h", [cycle_pb2.CycleEvent(goal=goal)])) == []
    # One round (a protecting canary): no interval, the margin of the ratio itself.
    for c in run.events[1].deployment.metrics:
        c.rounds = 1
    _, guard = canary_margins(run)
    assert guard["interval"] is None and guard["margin"] == pytest.approx(0.95 / 0.9 - 1)
    assert "one round, no interval" in guard["text"]
