"""Malformed and oversized requests into every RPC of every service (hypothesis): each gets an
answer or a clean error status, never INTERNAL or UNKNOWN (a handler that crashed), and every
service is still serving afterwards."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedcp.cli.probe import probe
from schedcp.runtime import rpc
from schedcp.runtime.service import MAX_MESSAGE_BYTES
from schedcp.v1 import executor_pb2, info_pb2, learner_pb2, observer_pb2, planner_pb2, rollout_pb2, verifier_pb2
from tests.conftest import NatsServer, ServiceProcesses, service_env

# The services each role's process serves (besides InfoService).
MODULES = {"observer": (observer_pb2,), "executor": (executor_pb2,), "verifier": (verifier_pb2,),
           "learner": (learner_pb2,), "planner": (planner_pb2, rollout_pb2)}
# What a caller may get back for nonsense: anything but a crash.
CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OUT_OF_RANGE,
         grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED,
         # a well-formed request for a long job (a 300 s profile) outlives the caller's deadline
         grpc.StatusCode.DEADLINE_EXCEEDED}
CALL_TIMEOUT_S = 3


def methods() -> list[tuple[str, str, bool]]:
    """(role, /package.Service/Method, server streaming) for every RPC, InfoService included."""
    found = []
    for role, modules in MODULES.items():
        for pb2 in (*modules, info_pb2):
            for service in pb2.DESCRIPTOR.services_by_name.values():
                found += [(role, f"/{service.full_name}/{m.name}", m.server_streaming) for m in service.methods]
    return found


async def send(addr: str, method: str, streaming: bool, payload: bytes) -> grpc.StatusCode:
    async with rpc.channel(addr, default_timeout_s=CALL_TIMEOUT_S,
                           **{"grpc.max_send_message_length": MAX_MESSAGE_BYTES * 2}) as channel:
        try:
            if streaming:
                async for _ in channel.unary_stream(method)(payload, timeout=CALL_TIMEOUT_S):
                    pass
            else:
                await channel.unary_unary(method)(payload, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in CLEAN, f"{method} answered {exc.code().name}: {exc.details()}"
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The five services once for the module (the fuzz run is long enough as it is)."""
    server = NatsServer(store=tmp_path_factory.mktemp("nats"))
    server.start()
    procs = ServiceProcesses(service_env(server.url, tmp_path_factory.mktemp("data")), tmp_path_factory.mktemp("logs"))
    try:
        procs.start(*MODULES)
        yield procs
    finally:
        procs.stop_all()
        server.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("role", "method", "streaming"), methods(), ids=[m for _, m, _ in methods()])
def test_random_bytes_get_a_clean_answer(stack, role, method, streaming):
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=512))
    def fuzz(payload: bytes) -> None:
        asyncio.run(send(stack.addr(role), method, streaming, payload))

    fuzz()
    assert asyncio.run(probe(role, stack.addr(role), timeout_s=5)).serving, f"{role} stopped serving"


@pytest.mark.parametrize("role", list(MODULES))
def test_oversized_requests_are_refused_and_the_service_lives_on(stack, role):
    payload = b"\x0a" + b"\xff" * (MAX_MESSAGE_BYTES + 16)
    code = asyncio.run(send(stack.addr(role), "/schedcp.v1.InfoService/GetServiceInfo", False, payload))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert asyncio.run(probe(role, stack.addr(role), timeout_s=5)).serving
