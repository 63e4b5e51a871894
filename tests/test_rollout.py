"""Host classes and progressive rollouts.

The rollout tests run the real nats-server, verifier, learner and planner (processes, as in
production) against simulated hosts (bench/simfleet.py: registrations, published profiles and
one in-process executor answering Deploy/Status/Rollback for every host by the host id the
planner names, with canaries that take a fraction of a second and measure nothing real): real
canaries on many hosts cannot run on this machine. bench/rollout.py runs the same at 1000 hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import grpc
import pytest

from bench import rollout as bench_rollout
from bench.simfleet import SimClass, SimFleet, serving
from schedcp.domain import hostclass, params
from schedcp.runtime import rpc, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import FailedPrecondition, InvalidArgument
from schedcp.v1 import (
    common_pb2,
    cycle_pb2,
    deployment_pb2,
    executor_pb2,
    host_pb2,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
    policy_pb2,
    rollout_pb2,
    rollout_pb2_grpc,
    verdict_pb2,
)
from services.executor.deployments import EventLog, Executor
from services.executor.server import ExecutorServicer
from services.planner import fleet, rollout, rollout_plan
from tests.otlp_receiver import OtlpReceiver
from tests.test_cycle_cli import schedcp

R = rollout_pb2


# --- host classes and the plan ------------------------------------------------------------------

def facts(cpus: int = 8, kernel: str = "6.13.2", btf: str = "3fa2c1d0" + "0" * 56, backends=("sched_ext", "native"),
          llcs: int = 2) -> host_pb2.HostFacts:
    f = host_pb2.HostFacts(arch="x86_64", kernel_release=kernel, btf_sha256=btf, backends=backends)
    f.cpu.logical_cpus, f.cpu.numa_nodes = cpus, 1
    f.cpu.llc_cpulists.extend(["0-3", "4-7"][:llcs])
    return f


def test_a_host_class_is_its_hardware_kernel_btf_and_backend():
    assert hostclass.of(facts()) == "x86_64-8cpu-1numa-2llc/6.13.2/btf-3fa2c1d0/sched_ext"
    native = facts(cpus=2, btf="", backends=("native",), llcs=1)
    assert hostclass.of(native) == "x86_64-2cpu-1numa-1llc/6.13.2/nobtf/native"
    # Another BTF is another kernel build: a sched_ext object compiled for one does not load on the other.
    assert hostclass.of(facts(btf="ffff" + "0" * 60)) != hostclass.of(facts())


def test_waves_reach_a_growing_part_of_each_class():
    default = rollout_plan.waves([])
    assert rollout_plan.reaches(default, 500) == [1, 25, 125, 500]
    # A small class skips waves that would add nobody.
    assert rollout_plan.reaches(default, 3) == [1, 3]
    assert rollout_plan.reaches(rollout_plan.waves(["2", "10", "100%"]), 5) == [2, 5]


@pytest.mark.parametrize(("waves", "words"), [
    (["1", "50%"], "the last wave must be 100%"),
    (["10%", "5%", "100%"], "waves must grow"),
    (["5%", "1", "100%"], "host counts come before shares"),
    (["one", "100%"], "'one' is not a wave: a number of hosts (10) or a share"),
    (["0", "100%"], "a wave reaches at least 1 host"),
    (["150%"], "a share is above 0% and at most 100%"),
])
def test_a_bad_wave_list_says_what_to_write(waves, words):
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
        rollout_plan.waves(waves)


def registration(host_id: str, f: host_pb2.HostFacts, cluster: str = "v1:1.2") -> host_pb2.HostRegistration:
    return host_pb2.HostRegistration(host_id=host_id, facts=f, workload_cluster=cluster)


def test_a_selector_picks_hosts_and_they_split_by_class_and_workload():
    hosts = [registration("web-1", facts()), registration("web-2", facts()), registration("db-1", facts(cpus=64)),
             registration("web-3", facts(), cluster="v1:3.0"), registration("old-1", facts(backends=("native",)))]
    chosen = [h.host_id for h in hosts if rollout_plan.selects(rollout_plan.selector("sched_ext=yes,cpus=8"), h)]
    assert chosen == ["web-1", "web-2", "web-3"]
    assert [h.host_id for h in hosts if rollout_plan.selects(rollout_plan.selector("host=web-*,workload=v1:1.*"), h)
            ] == ["web-1", "web-2"]
    assert rollout_plan.selector("all") == []
    groups = rollout_plan.classes(hosts)
    assert groups[(hostclass.of(facts()), "v1:1.2")] == ["web-1", "web-2"]
    assert len(groups) == 4
    for bad, words in (("", "a selector is required"), ("rack=3", "'rack=3' is not a selector term"),
                       ("cpus", "'cpus' is not a selector term")):
        with pytest.raises(InvalidArgument, match=words):
            rollout_plan.selector(bad)


def test_a_wave_regresses_on_too_many_hosts_not_keeping_it_or_a_negative_class_effect():
    passing = R.RolloutWave(kept=9, rolled_back=1, skipped=3)
    assert rollout.judge(passing, 0.2, fleet.ClassEffect(12, 0.4)) == (False, (
        "9 of 10 judged hosts kept it (1 rolled back, 0 failed, 3 skipped); the class's effect +40% over 12 outcomes"))
    regressed, why = rollout.judge(R.RolloutWave(kept=7, rolled_back=2, failed=1), 0.2, fleet.ClassEffect(10, 0.3))
    assert regressed and why.endswith("more than the 20% allowed did not keep it")
    regressed, why = rollout.judge(passing, 0.2, fleet.ClassEffect(40, -0.02))
    assert regressed and why.endswith("the class's effect turned negative")
    # Nothing judged (every host already ran it): nothing regressed.
    assert not rollout.judge(R.RolloutWave(skipped=4), 0.2, fleet.ClassEffect())[0]


def test_the_class_effect_pools_the_learner_statistics_of_that_class_with_the_parameters_asked_for():
    mine = dict(host_class="c1", signature_cluster="w1")
    effects = [policy_pb2.EffectStats(parameters_key="slice_us=3000,target=nginx", count=3, mean_improvement=0.5,
                                      proven=True, **mine),
               policy_pb2.EffectStats(parameters_key="slice_us=3000", count=1, mean_improvement=-0.3, **mine),
               policy_pb2.EffectStats(parameters_key="slice_us=9000", count=5, mean_improvement=-0.9, **mine),
               policy_pb2.EffectStats(parameters_key="slice_us=3000", count=5, mean_improvement=-0.9,
                                      host_class="c2", signature_cluster="w1")]
    wanted = {"slice_us": params.of(3000)}
    assert params.within(wanted, "slice_us=3000,target=nginx") and not params.within(wanted, "slice_us=9000")
    assert fleet.class_effect(effects, wanted, "c1", "w1") == fleet.ClassEffect(4, (3 * 0.5 - 0.3) / 4)
    assert fleet.proven_classes(effects, wanted) == ["c1 / w1"]
    assert fleet.proven_classes(effects, {"slice_us": params.of(9000)}) == []


def test_a_host_result_comes_from_its_cycle_end():
    def end(status, state=None, goal_skipped=False):
        event = cycle_pb2.CycleEvent(cycle_id="c1", stage=cycle_pb2.CYCLE_STAGE_RESULT, status=status, message="m")
        if state is not None:
            event.deployment.deployment.state, event.deployment.deployment.deployment_id = state, "d1"
        return fleet.result_of("h1", event, goal_skipped).result

    S, D = common_pb2, deployment_pb2
    assert end(S.STAGE_STATUS_SUCCEEDED, D.DEPLOYMENT_STATE_KEPT) == R.ROLLOUT_HOST_RESULT_KEPT
    assert end(S.STAGE_STATUS_FAILED, D.DEPLOYMENT_STATE_EJECTED) == R.ROLLOUT_HOST_RESULT_ROLLED_BACK
    assert end(S.STAGE_STATUS_FAILED, D.DEPLOYMENT_STATE_REFUSED) == R.ROLLOUT_HOST_RESULT_FAILED
    assert end(S.STAGE_STATUS_SKIPPED) == R.ROLLOUT_HOST_RESULT_ALREADY_RUNNING
    assert end(S.STAGE_STATUS_SKIPPED, goal_skipped=True) == R.ROLLOUT_HOST_RESULT_NOTHING_TO_DO
    assert end(S.STAGE_STATUS_FAILED) == R.ROLLOUT_HOST_RESULT_FAILED


def test_an_executor_stamps_its_outcomes_with_its_class_from_its_observers_facts(tmp_path):
    asked = []

    class Observer(observer_pb2_grpc.ObserverServiceServicer):
        async def HostInfo(self, request, context):
            asked.append(request)
            return observer_pb2.HostInfoResponse(facts=facts())

    class RecordingBus:
        def __init__(self) -> None:
            self.outcomes = []

        async def publish(self, subject, message, **kwargs) -> None:
            self.outcomes.append(message)

    async def scenario() -> list:
        server = grpc.aio.server()
        observer_pb2_grpc.add_ObserverServiceServicer_to_server(Observer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        bus = RecordingBus()
        executor = Executor(Settings(data_dir=tmp_path, host_id="web-1", observer_addr=f"127.0.0.1:{port}"), bus,
                            native=None, events=EventLog(tmp_path / "events.jsonl"))
        try:
            for n in range(2):
                deployment = deployment_pb2.Deployment(deployment_id=f"d{n}", host_id="web-1",
                                                       state=deployment_pb2.DEPLOYMENT_STATE_KEPT)
                await executor._publish_outcome(executor_pb2.DeployRequest(), deployment, None)
        finally:
            await server.stop(grace=None)
        return bus.outcomes

    outcomes = asyncio.run(scenario())
    assert [o.host_class for o in outcomes] == [hostclass.of(facts())] * 2
    assert len(asked) == 1  # asked once: the facts it depends on change only with a reboot


def test_an_executor_refuses_a_call_meant_for_another_host():
    servicer = ExecutorServicer(executor=None, host_id="web-1")
    servicer._meant_for_this_host("")  # callers that name no host are not checked
    servicer._meant_for_this_host("web-1")
    with pytest.raises(FailedPrecondition, match="this is the executor of web-1, the call was meant for web-2"):
        servicer._meant_for_this_host("web-2")


# --- rollouts against the real central services ---------------------------------------------------

def start_central(services, concurrency: int = 32, **env: str):
    services.env.update(SCHEDCP_GOAL_PROVIDER="rules", SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN="0",
                        SCHEDCP_ROLLOUT_CONCURRENCY=str(concurrency), **env)
    services.start("verifier", "learner", "planner")
    return services


@pytest.fixture
def central(services):
    return start_central(services)


def run(central, per_class: int, waves: list[str], **kwargs) -> dict:
    return asyncio.run(bench_rollout.run(central.env["SCHEDCP_NATS_URL"], central.addr("planner"), per_class, waves,
                                         **kwargs))


def test_a_rollout_completes_where_the_policy_helps_and_halts_in_one_wave_where_it_hurts(central):
    result = run(central, 20, ["1", "25%", "100%"])
    helped, hurt = result["classes"]["a"], result["classes"]["b"]
    assert result["state"] == "halted" and result["reason"].startswith("1 of 2 classes completed"), result["reason"]
    assert helped["state"] == "completed" and [w["reach"] for w in helped["waves"]] == [1, 5, 20], helped
    # The proving hosts already ran it; the rest kept it.
    assert helped["running_it_at_the_end"] == 20 and helped["waves"][-1]["skipped"] == 3
    assert hurt["state"] == "halted" and len(hurt["waves"]) == 1 and hurt["deployments"] == 1, hurt
    assert "more than the 20% allowed did not keep it" in hurt["reason"]
    assert hurt["running_it_at_the_end"] == 0 and hurt["class_effect"]["mean"] < 0
    # Every step is in the audit trail, each wave a trace of its own.
    actions = [a["action"] for a in result["audit"]]
    assert actions[0] == "rollout_start" and actions[-1] == "rollout_halt" and actions.count("rollout_halt") == 2
    assert actions.count("rollout_wave") == 2 * len(helped["waves"]) + 1, actions
    traces = {w["trace_id"] for c in result["classes"].values() for w in c["waves"]}
    assert len(traces) == 4 and all(len(t) == 32 for t in traces)

    status = schedcp(central.env, "rollout", "status", result["rollout_id"])
    assert status.returncode == 0 and "halted: 1 of 2 classes completed" in status.stdout, status.stderr
    listed = json.loads(schedcp(central.env, "--json", "rollout", "status").stdout)
    assert [r["rolloutId"] for r in listed["rollouts"]] == [result["rollout_id"]]
    hosts = schedcp(central.env, "hosts")
    assert hosts.returncode == 0 and "class" in hosts.stdout and "x86_64-64cpu-1numa" in hosts.stdout, hosts.stdout
    registered = json.loads(schedcp(central.env, "--json", "hosts").stdout)["hosts"]
    assert {h["workloadCluster"] for h in registered} == {c["workload_cluster"] for c in result["classes"].values()}
    policies = schedcp(central.env, "policies")
    assert "measured per host class and workload" in policies.stdout and "-30%" in policies.stdout, policies.stdout
    history = schedcp(central.env, "history", "-n", "1000")
    assert f"rollout {result['rollout_id']}" in history.stdout, history.stdout


def test_a_wave_that_regresses_rolls_back_its_hosts_that_kept_the_policy(central):
    # Every 4th host's canary measures the opposite: the first wave of 4 has one (25 %, above 20 %).
    noisy = SimClass("n", cpus=2, kernel="6.1.0-sim-n", improvement=0.6, contrary_every=4)
    result = run(central, 11, ["4", "100%"], classes=(noisy,))
    track = result["classes"]["n"]
    assert track["state"] == "halted" and len(track["waves"]) == 1, track
    assert (track["waves"][0]["kept"], track["waves"][0]["rolled_back"]) == (3, 1)
    assert track["reverted"] == 3 and track["rollbacks"] == 3, track
    # What runs now: the three proving hosts (of the last wave, never reached) and nothing else.
    assert track["running_it_at_the_end"] == bench_rollout.PROVING_HOSTS
    assert "the 3 of its hosts that had kept it rolled back" in track["reason"], track["reason"]
    shown = schedcp(central.env, "--json", "rollout", "status", result["rollout_id"], "--hosts")
    hosts = json.loads(shown.stdout)["hosts"]
    assert sorted((h["hostId"], h["result"], h.get("reverted", False)) for h in hosts) == [
        ("sim-n-0000", "ROLLOUT_HOST_RESULT_KEPT", True), ("sim-n-0001", "ROLLOUT_HOST_RESULT_KEPT", True),
        ("sim-n-0002", "ROLLOUT_HOST_RESULT_KEPT", True), ("sim-n-0003", "ROLLOUT_HOST_RESULT_ROLLED_BACK", False)]
    table = schedcp(central.env, "rollout", "status", result["rollout_id"], "--hosts")
    assert table.returncode == 0 and "sim-n-0003" in table.stdout and "rolled back" in table.stdout, table.stdout


def test_each_rollout_step_is_one_trace_holding_its_hosts_cycles(services):
    with OtlpReceiver() as receiver:
        # Export within 0.1 s, not the default 5 s.
        central = start_central(services, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
        result = run(central, 4, ["1", "100%"])
        first = result["classes"]["a"]["waves"][0]["trace_id"]
        spans = receiver.wait_for(lambda got: "schedcp-learner" in {
            x.service for x in got if x.trace_id == first} and "rollout end" in {x.name for x in got})
    wave = [x for x in spans if x.trace_id == first]
    by_id = {x.span_id: x for x in wave}
    roots = [x.name for x in wave if x.parent_span_id not in by_id]
    assert roots == ["rollout wave 1"], roots
    assert [x.name for x in wave if x.name.startswith("rollout host ")] == ["rollout host sim-a-0000"]
    # The host's cycle is in the wave's trace: its calls and the learner's answers too. (Its
    # verification may be the planner's memo of the proving hosts' approval: no call then.)
    assert {"schedcp.v1.ExecutorService/Deploy", "schedcp.v1.LearnerService/SearchPolicies"} <= {
        x.name for x in wave if x.service == "schedcp-planner"}
    # Start, class a's two waves, class b's one, the end: a trace each.
    steps = [x for x in spans if x.name.startswith("rollout ") and not x.name.startswith("rollout host")]
    assert sorted(x.name for x in steps) == ["rollout end", "rollout start", "rollout wave 1", "rollout wave 1",
                                             "rollout wave 2"]
    assert len({x.trace_id for x in steps}) == 5


def test_a_rollout_waits_out_a_learner_outage(services):
    central = start_central(services, concurrency=4)

    def outage() -> None:
        central.stop("learner")
        time.sleep(rollout.RETRY_S + 1)
        central.start("learner")

    result = run(central, 8, ["1", "100%"], restart=outage)
    assert result["classes"]["a"]["state"] == "completed" and result["classes"]["b"]["state"] == "halted", result
    assert result["classes"]["a"]["running_it_at_the_end"] == 8


def test_rollout_start_wait_follows_the_waves_to_the_end(central):
    async def scenario():
        async with proven_class_a(central, 6):
            return await asyncio.to_thread(schedcp, central.env, "rollout", "start", bench_rollout.POLICY,
                                           "--hosts", "host=sim-a-*", "--waves", "1,100%", "--wait")

    done = asyncio.run(scenario())
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())  # lines wrap at the console's width
    assert said.startswith("rollout r-") and "to 6 hosts in 1 classes, waves 1, 100%" in said, said
    assert ": wave 1 judged: 1 of 1 judged hosts kept it" in said and ": wave 2 judged:" in said, said
    assert said.endswith("completed: 1 of 1 classes completed"), said


@contextlib.asynccontextmanager
async def proven_class_a(central, hosts: int, canary_s: float = 0.2):
    """Class a's simulated hosts served, the policy proven by name on its last three: yields
    (bus, fleet)."""
    bus = await Bus.connect(central.env["SCHEDCP_NATS_URL"], "test")
    sim = SimFleet(bus, canary_s=canary_s)
    sim.add(bench_rollout.HELPED, hosts)
    proving = bench_rollout.proving_hosts(sim, bench_rollout.HELPED)
    try:
        async with serving(sim, observed=proving):
            await bench_rollout.prove(central.addr("planner"), proving)
            yield bus, sim
    finally:
        await bus.close()


def start(addr: str, **fields) -> R.Rollout:
    async def call():
        async with rpc.channel(addr, 30) as channel:
            return await rollout_pb2_grpc.RolloutServiceStub(channel).StartRollout(R.StartRolloutRequest(**fields))

    return asyncio.run(call())


def test_bad_rollout_requests_are_refused_with_a_clear_error(central):
    async def register() -> None:
        bus = await Bus.connect(central.env["SCHEDCP_NATS_URL"], "test")
        try:
            sim = SimFleet(bus)
            sim.add(bench_rollout.HELPED, 2)
            await sim.publish()
        finally:
            await bus.close()

    asyncio.run(register())
    addr = central.addr("planner")
    cases = [
        (dict(policy="batch_sched_idle", selector="all", waves=["1", "50%"]), grpc.StatusCode.INVALID_ARGUMENT,
         "the last wave must be 100%"),
        (dict(policy="no_such_policy", selector="all"), grpc.StatusCode.INVALID_ARGUMENT,
         "no library policy 'no_such_policy'"),
        (dict(policy="batch_sched_idle", selector="cpus=128"), grpc.StatusCode.INVALID_ARGUMENT,
         "the selector 'cpus=128' matches none of the 2 registered hosts"),
        (dict(policy="batch_sched_idle", selector="rack=3"), grpc.StatusCode.INVALID_ARGUMENT,
         "'rack=3' is not a selector term"),
        (dict(policy="batch_sched_idle", selector="all", max_rollback_fraction=1.5), grpc.StatusCode.INVALID_ARGUMENT,
         "the rollback threshold must be a fraction"),
        (dict(policy="fifo", selector="all"), grpc.StatusCode.FAILED_PRECONDITION, "has no sched_ext"),
        (dict(policy="batch_sched_idle", selector="all"), grpc.StatusCode.FAILED_PRECONDITION,
         "is not proven in any class yet"),
    ]
    for fields, code, words in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            start(addr, **fields)
        assert caught.value.code() == code and words in caught.value.details(), (fields, caught.value.details())
    cli = schedcp(central.env, "rollout", "start", "batch_sched_idle", "--hosts", "all", "--waves", "1,x,100%")
    assert cli.returncode == 1 and "'x' is not a wave" in cli.stderr, cli.stderr


def test_a_planner_restarted_mid_rollout_resumes_it_where_it_stood(services):
    central = start_central(services, concurrency=2)

    def restart() -> None:
        central.stop("planner")
        central.start("planner")

    result = run(central, 12, ["1", "25%", "100%"], canary_s=0.5, restart=restart)
    assert_resumed_where_it_stood(result, "the planner restarted")


def test_a_rollout_whose_planner_is_killed_is_taken_over_by_another_replica(services):
    """Two planner replicas (leases of 2 s); the one that started the rollout is killed with
    SIGKILL once a quarter of the hosts were deployed to. The other takes it over where it stood
    and finishes it: no host deployed twice, the audit trail says who took it over from whom."""
    central = start_central(services, concurrency=2, SCHEDCP_PLANNER_LEASE_S="2")
    replica = central.start_replica("planner")
    first = central.procs.pop("planner")

    def kill_the_first() -> None:
        first.kill()
        first.wait()

    result = run(central, 12, ["1", "25%", "100%"], canary_s=0.5, restart=kill_the_first, follow_addr=replica)
    assert_resumed_where_it_stood(result, "stopped renewing its lease")


def assert_resumed_where_it_stood(result: dict, why: str) -> None:
    """A rollout of 12 hosts interrupted after its first deployments and resumed: the helped class
    completed, the hurt one halted in its first wave, the audit's resume says `why`. No host was
    deployed twice: hosts with a result were not started again, and one whose canary was in
    flight found it running."""
    helped, hurt = result["classes"]["a"], result["classes"]["b"]
    assert result["planner_restarted_after_deployments"] and helped["state"] == "completed", result
    assert hurt["state"] == "halted" and len(hurt["waves"]) == 1
    assert helped["hosts_deployed_twice"] == 0 and helped["running_it_at_the_end"] == 12, helped
    resumed = [a for a in result["audit"] if a["action"] == "rollout_resume"]
    assert resumed and why in resumed[0]["reason"], result["audit"]


@pytest.mark.parametrize("asked", ["the replica running it", "another replica"])
def test_a_rollout_pauses_resumes_and_aborts(services, asked):
    central = start_central(services, concurrency=1)
    addr = central.addr("planner")
    # Another planner replica takes the operator's pause, resume and abort to the one running it.
    asked_addr = addr if asked == "the replica running it" else central.start_replica("planner")

    async def control(method: str, request):
        target = addr if method == "StartRollout" else asked_addr
        async with rpc.channel(target, 30) as channel:
            return await getattr(rollout_pb2_grpc.RolloutServiceStub(channel), method)(request)

    async def scenario() -> tuple[list[int], R.Rollout]:
        async with proven_class_a(central, 12, canary_s=0.5) as (_, sim):
            started = await control("StartRollout", R.StartRolloutRequest(
                policy=bench_rollout.POLICY, selector="host=sim-a-*", waves=["1", "100%"]))
            rid = started.rollout_id
            paused = await control("PauseRollout", R.PauseRolloutRequest(rollout_id=rid))
            assert paused.state == R.ROLLOUT_STATE_PAUSED
            deployed = [sum(h.deployments for h in sim.hosts.values())]
            await asyncio.sleep(2)  # paused: at most the host in flight finishes
            deployed.append(sum(h.deployments for h in sim.hosts.values()))
            await control("ResumeRollout", R.ResumeRolloutRequest(rollout_id=rid))
            deadline = time.monotonic() + 30
            while sum(h.deployments for h in sim.hosts.values()) < deployed[-1] + 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            deployed.append(sum(h.deployments for h in sim.hosts.values()))
            aborted = await control("AbortRollout", R.AbortRolloutRequest(rollout_id=rid, reason="enough"))
            await asyncio.sleep(1.5)
            deployed.append(sum(h.deployments for h in sim.hosts.values()))
            return deployed, aborted

    deployed, aborted = asyncio.run(scenario())
    proving = bench_rollout.PROVING_HOSTS
    assert deployed[1] - proving <= 1, deployed  # nothing new started while paused
    assert deployed[2] >= deployed[1] + 3, deployed  # resumed
    assert deployed[3] <= deployed[2] + 1, deployed  # aborted: at most the one in flight finished
    assert aborted.state == R.ROLLOUT_STATE_ABORTED and "aborted by" in aborted.reason and "enough" in aborted.reason
    again = schedcp(central.env, "rollout", "resume", aborted.rollout_id)
    assert again.returncode == 1 and "is not running and cannot be resumed (aborted" in again.stderr, again.stderr
    history = schedcp(central.env, "--json", "history", "-n", "1000")
    actions = [r["action"] for r in json.loads(history.stdout)["records"] if r.get("rolloutId") == aborted.rollout_id]
    assert [a for a in actions if a != "AUDIT_ACTION_ROLLOUT_WAVE"] == [
        "AUDIT_ACTION_ROLLOUT_START", "AUDIT_ACTION_ROLLOUT_PAUSE", "AUDIT_ACTION_ROLLOUT_RESUME",
        "AUDIT_ACTION_ROLLOUT_ABORT"], actions


# --- rollouts the planner proposes ----------------------------------------------------------------

def cycle_end(state: int, digest: str = "sha256:b", status: int = common_pb2.STAGE_STATUS_SUCCEEDED):
    deployment = deployment_pb2.DeploymentEvent(deployment=deployment_pb2.Deployment(
        host_id="h1", policy_name="batch_sched_idle", artifact_digest=digest, state=state))
    return cycle_pb2.CycleEvent(host_id="h1", stage=cycle_pb2.CYCLE_STAGE_RESULT, status=status, deployment=deployment)


def test_the_kept_artifact_of_a_cycle_is_the_one_its_result_deployed():
    artifact = policy_pb2.PolicyArtifact(name="batch_sched_idle", digest="sha256:b")
    artifact.parameters["batch_comm"].CopyFrom(params.of("ffmpeg"))
    other = policy_pb2.PolicyArtifact(name="favour_group", digest="sha256:f")
    verified = [cycle_pb2.CycleEvent(stage=cycle_pb2.CYCLE_STAGE_VERIFY, verdict=verdict)
                for verdict in (verdict_of(other), verdict_of(artifact))]
    host, kept = rollout.kept_artifact([*verified, cycle_end(deployment_pb2.DEPLOYMENT_STATE_KEPT)])
    assert host == "h1" and kept.name == "batch_sched_idle" and params.text(kept.parameters["batch_comm"]) == "ffmpeg"
    assert rollout.kept_artifact([*verified, cycle_end(deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK)]) is None
    assert rollout.kept_artifact([*verified, cycle_end(deployment_pb2.DEPLOYMENT_STATE_KEPT, "sha256:x")]) is None
    assert rollout.kept_artifact(verified) is None and rollout.kept_artifact([]) is None
    skipped = cycle_end(deployment_pb2.DEPLOYMENT_STATE_KEPT, status=common_pb2.STAGE_STATUS_SKIPPED)
    assert rollout.kept_artifact([*verified, skipped]) is None


def verdict_of(artifact: policy_pb2.PolicyArtifact) -> verdict_pb2.Verdict:
    return verdict_pb2.Verdict(artifact=artifact, claims=verdict_pb2.VerdictClaims(approved=True))


def proposals_scenario(central, act, before=None):
    """Class a's policy proven on three hosts by name (then `before(addr, sim)`, if given); then
    a fourth host opted in to automatic tuning publishes a profile: its automatic cycle keeps the
    proven policy. `act(addr, sim)` runs next, with the fleet still served; returns what it
    returns."""
    addr = central.addr("planner")

    async def scenario():
        async with proven_class_a(central, 6) as (bus, sim):
            if before is not None:
                await before(addr, sim)
            automatic = sim.hosts["sim-a-0000"]
            async with rpc.channel(addr, 30) as channel:
                await planner_pb2_grpc.PlannerServiceStub(channel).SetAuto(
                    planner_pb2.SetAutoRequest(host_id=automatic.host_id, enabled=True))
            profile = automatic.profile()
            await bus.publish(topology.subject(topology.Kind.PROFILE, automatic.host_id), profile,
                              msg_id=profile.profile_id)
            deadline = time.monotonic() + 60
            while not (automatic.current and automatic.current.state == deployment_pb2.DEPLOYMENT_STATE_KEPT):
                assert time.monotonic() < deadline, "the automatic cycle kept nothing"
                await asyncio.sleep(0.2)
            return await act(addr, sim)

    return asyncio.run(scenario())


async def rollout_rpc(addr: str, method: str, request):
    async with rpc.channel(addr, 30) as channel:
        return await getattr(rollout_pb2_grpc.RolloutServiceStub(channel), method)(request)


async def proposals(addr: str) -> list[R.Rollout]:
    deadline = time.monotonic() + 30
    while True:
        listed = (await rollout_rpc(addr, "ListRollouts", R.ListRolloutsRequest())).rollouts
        found = [r for r in listed if r.state == R.ROLLOUT_STATE_PROPOSED or r.actor.startswith("planner")]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def test_a_policy_proven_by_an_automatic_cycle_is_proposed_to_its_class_and_runs_once_approved(central):
    async def act(addr: str, sim: SimFleet):
        [proposal] = await proposals(addr)
        deployed = sum(h.deployments for h in sim.hosts.values())
        await asyncio.sleep(1)  # proposed: nothing runs
        idle = sum(h.deployments for h in sim.hosts.values()) == deployed
        with pytest.raises(grpc.aio.AioRpcError) as paused:
            await rollout_rpc(addr, "PauseRollout", R.PauseRolloutRequest(rollout_id=proposal.rollout_id))
        approved = await rollout_rpc(addr, "ApproveRollout", R.ApproveRolloutRequest(rollout_id=proposal.rollout_id))
        with pytest.raises(grpc.aio.AioRpcError) as twice:
            await rollout_rpc(addr, "ApproveRollout", R.ApproveRolloutRequest(rollout_id=proposal.rollout_id))
        done = await bench_rollout.wait_for(addr, proposal.rollout_id, lambda r: r.state in bench_rollout.ENDED, 60)
        running = sum(1 for h in sim.hosts.values()
                      if h.current and h.current.state == deployment_pb2.DEPLOYMENT_STATE_KEPT)
        return proposal, idle, paused.value, approved, twice.value, done, running

    proposal, idle, paused, approved, twice, done, running = proposals_scenario(central, act)
    host_class = hostclass.of(bench_rollout.HELPED.facts("sim-a-0000"))
    assert proposal.policy == bench_rollout.POLICY and proposal.actor == "planner", proposal
    assert proposal.selector.startswith(f"class={host_class},workload="), proposal.selector
    # Group names are each host's own (from its goal): a proposal carries tunables only.
    assert not [n for n, v in proposal.parameters.items() if v.WhichOneof("value") == "string_value"], proposal
    assert [len(t.host_ids) for t in proposal.tracks] == [6] and idle
    assert paused.code() == grpc.StatusCode.FAILED_PRECONDITION and "is a proposal" in paused.details()
    assert approved.state == R.ROLLOUT_STATE_RUNNING and approved.rollout_id == proposal.rollout_id
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION and "not a proposal" in twice.details()
    assert done.state == R.ROLLOUT_STATE_COMPLETED and running == 6, (done.reason, running)
    history = schedcp(central.env, "--json", "history", "-n", "1000")
    actions = [(r["action"], r.get("actor")) for r in json.loads(history.stdout)["records"]
               if r.get("rolloutId") == proposal.rollout_id]
    assert [a for a, _ in actions[:2]] == ["AUDIT_ACTION_ROLLOUT_PROPOSE", "AUDIT_ACTION_ROLLOUT_START"], actions
    assert actions[0][1] == "planner" and actions[1][1] != "planner", actions  # approved by the operator
    proposed = next(r for r in json.loads(history.stdout)["records"] if r["action"] == "AUDIT_ACTION_ROLLOUT_PROPOSE")
    assert f"schedcp rollout approve {proposal.rollout_id}" in proposed["reason"], proposed["reason"]


def test_a_declined_proposal_is_not_proposed_again_nor_approved(central):
    async def act(addr: str, sim: SimFleet):
        [proposal] = await proposals(addr)
        declined = await rollout_rpc(addr, "AbortRollout", R.AbortRolloutRequest(rollout_id=proposal.rollout_id,
                                                                                  reason="not this week"))
        with pytest.raises(grpc.aio.AioRpcError) as approved:
            await rollout_rpc(addr, "ApproveRollout", R.ApproveRolloutRequest(rollout_id=proposal.rollout_id))
        return declined, approved.value, await proposals(addr)

    declined, approved, after = proposals_scenario(central, act)
    assert declined.state == R.ROLLOUT_STATE_ABORTED and declined.reason.startswith("declined by "), declined.reason
    assert "not this week" in declined.reason
    assert approved.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [r.state for r in after] == [R.ROLLOUT_STATE_ABORTED]


def test_with_proposals_set_to_start_the_planner_starts_the_rollout_itself(services):
    central = start_central(services, SCHEDCP_ROLLOUT_PROPOSALS="start")

    async def act(addr: str, sim: SimFleet):
        [started] = await proposals(addr)
        return await bench_rollout.wait_for(addr, started.rollout_id, lambda r: r.state in bench_rollout.ENDED, 60)

    done = proposals_scenario(central, act)
    assert done.state == R.ROLLOUT_STATE_COMPLETED, done.reason
    assert done.actor == "planner (SCHEDCP_ROLLOUT_PROPOSALS=start)", done.actor


def test_with_proposals_off_nothing_is_proposed(services):
    central = start_central(services, SCHEDCP_ROLLOUT_PROPOSALS="off")

    async def act(addr: str, sim: SimFleet):
        await asyncio.sleep(2)
        return (await rollout_rpc(addr, "ListRollouts", R.ListRolloutsRequest())).rollouts

    assert list(proposals_scenario(central, act)) == []


def test_no_proposal_where_an_operators_rollout_reached_the_class(central):
    async def rolled_out_by_the_operator(addr: str, sim: SimFleet) -> None:
        started = await rollout_rpc(addr, "StartRollout", R.StartRolloutRequest(
            policy=bench_rollout.POLICY, selector="host=sim-a-*", waves=["1", "100%"]))
        await bench_rollout.wait_for(addr, started.rollout_id, lambda r: r.state in bench_rollout.ENDED, 60)
        sim.hosts["sim-a-0000"].current = None  # taken off by hand: its automatic cycle deploys it again

    async def act(addr: str, sim: SimFleet):
        await asyncio.sleep(2)
        return (await rollout_rpc(addr, "ListRollouts", R.ListRolloutsRequest())).rollouts

    listed = proposals_scenario(central, act, before=rolled_out_by_the_operator)
    assert [(r.state, r.actor.startswith("planner")) for r in listed] == [(R.ROLLOUT_STATE_COMPLETED, False)], listed
