"""Automatic tuning on profile drift, with a real nats-server: a host's first profile and a
changed workload trigger a Tune, an unchanged one does not, the minimum interval holds, and two
planner replicas never both tune the same host. End to end with the real planner, learner and
verifier: simulated hosts (the fleet bench's) that publish a profile are tuned from it."""

from __future__ import annotations

import asyncio
import json
import time

import grpc

from bench import planner_fleet
from bench.planner_fleet import SimulatedExecutors, run_fleet, with_executors
from schedcp.runtime import topology
from schedcp.runtime.bus import Bus
from schedcp.v1 import common_pb2, cycle_pb2, executor_pb2_grpc, host_pb2, profile_pb2
from services.planner import triggers
from tests.test_cycle_cli import schedcp
from tests.test_planner import BATCH, LATENCY, group, profile


def host_profile(host: str, dominant: str, probe_class: int = LATENCY) -> profile_pb2.WorkloadProfile:
    p = profile(group(dominant, BATCH, 3.0), group("cyclictest", probe_class, 0.1))
    p.groups[0].features.cpu_share, p.groups[1].features.cpu_share = 0.9, 0.05
    p.host.host_id = host
    return p


async def replicas(url: str, count: int, min_interval_s: float,
                   every_host: bool = True) -> tuple[list[Bus], list[str]]:
    tuned: list[str] = []

    async def tune(profile: profile_pb2.WorkloadProfile) -> None:
        tuned.append(profile.host.host_id)

    buses = []
    for i in range(count):
        bus = await Bus.connect(url, f"planner-{i}")
        await bus.ensure_topology()
        await triggers.DriftWatcher(bus, tune, min_interval_s, every_host=every_host).start()
        buses.append(bus)
    return buses, tuned


async def publish_and_settle(bus: Bus, *profiles: profile_pb2.WorkloadProfile) -> None:
    for p in profiles:
        await bus.publish(topology.subject(topology.Kind.PROFILE, p.host.host_id), p)
        await asyncio.sleep(0.5)


def test_drift_triggers_a_tune_and_replicas_share_the_work(nats_server):
    async def scenario():
        buses, tuned = await replicas(nats_server.url, 2, min_interval_s=0)
        try:
            await publish_and_settle(buses[0], host_profile("h1", "make"))          # first sight
            await publish_and_settle(buses[0], host_profile("h1", "make"))          # unchanged
            await publish_and_settle(buses[0], host_profile("h1", "ffmpeg"))        # new dominant group
            await publish_and_settle(buses[0], host_profile("h1", "ffmpeg", BATCH))  # probe changed class
            await publish_and_settle(buses[1], *(host_profile(f"h{i}", "make") for i in range(2, 7)))
            return tuned
        finally:
            for bus in buses:
                await bus.close()

    tuned = asyncio.run(scenario())
    assert tuned.count("h1") == 3, tuned
    assert sorted(h for h in tuned if h != "h1") == ["h2", "h3", "h4", "h5", "h6"]  # each once across replicas


def test_the_minimum_interval_holds_per_host(nats_server):
    async def scenario():
        buses, tuned = await replicas(nats_server.url, 1, min_interval_s=3600)
        try:
            await publish_and_settle(buses[0], host_profile("h1", "make"), host_profile("h1", "ffmpeg"),
                                     host_profile("h2", "make"))
            return tuned
        finally:
            await buses[0].close()

    assert asyncio.run(scenario()) == ["h1", "h2"]


def test_without_planner_auto_only_hosts_opted_in_are_tuned(nats_server):
    async def scenario():
        buses, tuned = await replicas(nats_server.url, 1, min_interval_s=0, every_host=False)
        bus = buses[0]
        try:
            await triggers.set_auto(bus, "h1", True)
            await publish_and_settle(bus, host_profile("h1", "make"), host_profile("h2", "make"))
            await triggers.set_auto(bus, "h1", False)
            await triggers.set_auto(bus, "h2", True)
            await publish_and_settle(bus, host_profile("h1", "ffmpeg"), host_profile("h2", "ffmpeg"))
            return tuned
        finally:
            await bus.close()

    assert asyncio.run(scenario()) == ["h1", "h2"]


def test_tune_auto_opts_a_registered_host_in_and_out(services):
    services.start("observer", "planner")
    on = schedcp(services.env, "tune", "testhost", "--auto")
    assert on.returncode == 0 and "automatic tuning on for testhost" in on.stdout, on.stderr
    off = schedcp(services.env, "--json", "tune", "testhost", "--auto", "off")
    assert off.returncode == 0 and json.loads(off.stdout)["enabled"] is False, off.stderr
    unknown = schedcp(services.env, "tune", "nohost", "--auto")
    assert unknown.returncode == 1 and "host 'nohost' is not registered" in unknown.stderr


def test_drift_names_what_changed():
    before = triggers.workload_state(host_profile("h", "make"))
    assert triggers.drifted(before, triggers.workload_state(host_profile("h", "make"))) == ""
    assert triggers.drifted(before, triggers.workload_state(
        host_profile("h", "ffmpeg"))) == "ffmpeg now dominates (was make)"
    assert triggers.drifted(before, triggers.workload_state(
        host_profile("h", "make", BATCH))) == "cyclictest changed class"


def test_the_planner_tunes_hosts_from_the_profiles_they_publish(services):
    # Simulated hosts keep every deployment and measure nothing: a search would compare zeros.
    services.env.update(SCHEDCP_PLANNER_AUTO="true", SCHEDCP_PLANNER_MIN_INTERVAL_S="0", SCHEDCP_TUNE_BUDGET="1")
    services.start("verifier", "learner", "planner")
    url = services.env["SCHEDCP_NATS_URL"]
    run = asyncio.run(with_executors(lambda addr: run_fleet(url, addr, 5, "test")))
    # Every host decided: goal from its published profile (no observer exists for these hosts),
    # candidates, the native policy verified for its kernel and deployed by its executor.
    assert (run["decided"], run["kept"], run["from_published_profile"]) == (5, 5, 5), run


def test_profiles_that_did_not_drift_cost_the_planner_no_request(nats_server):
    # A fleet's profiles hardly ever drift: the planner follows its records with a KV watch
    # instead of reading one per profile.
    async def scenario():
        buses, tuned = await replicas(nats_server.url, 1, min_interval_s=0)
        bus = buses[0]
        try:
            await publish_and_settle(bus, host_profile("h1", "make"))
            asked: list[str] = []
            request = bus.nc.request

            async def counted(subject, *args, **kwargs):
                if "schedcp_planner" in subject:
                    asked.append(subject)
                return await request(subject, *args, **kwargs)

            bus.nc.request = counted
            await publish_and_settle(bus, *(host_profile("h1", "make") for _ in range(5)))
            unchanged = list(asked)
            await publish_and_settle(bus, host_profile("h1", "ffmpeg"))
            return tuned, unchanged, asked
        finally:
            await bus.close()

    tuned, unchanged, asked = asyncio.run(scenario())
    assert tuned == ["h1", "h1"] and unchanged == [], (tuned, unchanged)
    assert len(asked) == 1, asked  # the drift's claim


class HeldExecutors(SimulatedExecutors):
    """Deployments wait until released, so the planner's only cycle slot stays taken."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def Deploy(self, request, context):
        await self.release.wait()
        async for event in super().Deploy(request, context):
            yield event


def test_a_cycle_that_waited_for_a_slot_starts_from_the_hosts_newest_profile(services):
    # A fleet starting together: a host's first profile waits behind other cycles until it is
    # too old to plan from; the host published a newer one meanwhile, and the cycle takes it
    # (these simulated hosts have no observer to profile them again).
    services.env.update(SCHEDCP_PLANNER_AUTO="true", SCHEDCP_PLANNER_MIN_INTERVAL_S="0", SCHEDCP_TUNE_BUDGET="1",
                        SCHEDCP_PLANNER_MAX_CYCLES="1")
    services.start("verifier", "learner", "planner")

    async def scenario():
        executors, server = HeldExecutors(), grpc.aio.server()
        executor_pb2_grpc.add_ExecutorServiceServicer_to_server(executors, server)
        addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        bus = await Bus.connect(services.env["SCHEDCP_NATS_URL"], "test")
        events: dict[str, list[cycle_pb2.CycleEvent]] = {}

        async def on_cycle(msg) -> None:
            event = cycle_pb2.CycleEvent()
            event.ParseFromString(msg.data)
            events.setdefault(event.host_id, []).append(event)

        def seen(host: str, stage: int):
            async def check() -> bool:
                return any(e.stage == stage for e in events.get(host, []))
            return check

        async def until(condition) -> None:
            deadline = time.monotonic() + 60
            while not await condition():
                assert time.monotonic() < deadline, events
                await asyncio.sleep(0.1)

        try:
            hosts, planner = await bus.kv(topology.HOSTS_BUCKET), await bus.kv(topology.PLANNER_BUCKET)
            for host in ("held", "late"):
                await hosts.put(host, host_pb2.HostRegistration(
                    host_id=host, observer_addr="127.0.0.1:9", executor_addr=addr,
                    facts=planner_fleet.facts(host)).SerializeToString())
            await bus.nc.subscribe(topology.all_hosts(topology.Kind.CYCLE), cb=on_cycle)
            await bus.publish(topology.subject(topology.Kind.PROFILE, "held"), planner_fleet.profile("held", 0))
            await until(seen("held", cycle_pb2.CYCLE_STAGE_CANDIDATES))
            stale = planner_fleet.profile("late", 1)
            stale.profile_id = "late-stale"
            stale.window_start.FromSeconds(int(time.time()) - 120)
            await bus.publish(topology.subject(topology.Kind.PROFILE, "late"), stale)
            await until(lambda: _claimed(planner, "late"))  # its cycle waits for the slot
            fresh = planner_fleet.profile("late", 1)
            fresh.profile_id = "late-fresh"
            await bus.publish(topology.subject(topology.Kind.PROFILE, "late"), fresh)
            executors.release.set()
            await until(seen("late", cycle_pb2.CYCLE_STAGE_RESULT))
            return events["late"]
        finally:
            await bus.close()
            await server.stop(None)

    late = asyncio.run(scenario())
    assert late[-1].status == common_pb2.STAGE_STATUS_SUCCEEDED, [e.message for e in late]
    assert late[0].stage == cycle_pb2.CYCLE_STAGE_OBSERVE and "the published profile late-fresh" in late[0].message
    # An automatic cycle is one trace, as an operator's is.
    assert late[0].trace_id and {e.trace_id for e in late} == {late[0].trace_id}, [e.trace_id for e in late]


async def _claimed(kv, key: str) -> bool:
    try:
        await kv.get(key)
    except Exception:
        return False
    return True
