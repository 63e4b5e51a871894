"""Automatic tuning on profile drift, with a real nats-server: a host's first profile and a
changed workload trigger a Tune, an unchanged one does not, the minimum interval holds, and two
planner replicas never both tune the same host."""

from __future__ import annotations

import asyncio

from schedcp import topology
from schedcp.bus import Bus
from schedcp.v1 import profile_pb2
from services.planner import triggers
from tests.test_planner import BATCH, LATENCY, group, profile


def host_profile(host: str, dominant: str, probe_class: int = LATENCY) -> profile_pb2.WorkloadProfile:
    p = profile(group(dominant, BATCH, 3.0), group("cyclictest", probe_class, 0.1))
    p.groups[0].features.cpu_share, p.groups[1].features.cpu_share = 0.9, 0.05
    p.host.host_id = host
    return p


async def replicas(url: str, count: int, min_interval_s: float) -> tuple[list[Bus], list[str]]:
    tuned: list[str] = []

    async def tune(host: str) -> None:
        tuned.append(host)

    buses = []
    for i in range(count):
        bus = await Bus.connect(url, f"planner-{i}")
        await bus.ensure_topology()
        await triggers.DriftWatcher(bus, tune, min_interval_s).start()
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


def test_drift_names_what_changed():
    before = triggers.workload_state(host_profile("h", "make"))
    assert triggers.drifted(before, triggers.workload_state(host_profile("h", "make"))) == ""
    assert triggers.drifted(before, triggers.workload_state(
        host_profile("h", "ffmpeg"))) == "ffmpeg now dominates (was make)"
    assert triggers.drifted(before, triggers.workload_state(
        host_profile("h", "make", BATCH))) == "cyclictest changed class"
