"""Per-client rate limits on Tune and Verify (schedcp/runtime/limits.py): the bucket's arithmetic with a
clock the test drives, then a real verifier that refuses a tool's third call in a minute while
the planner's certificate is not limited."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from schedcp.domain import native_policies, policies
from schedcp.runtime import limits, rpc, tls
from schedcp.runtime.errors import ResourceExhausted
from schedcp.v1 import common_pb2, policy_pb2, verdict_pb2, verifier_pb2, verifier_pb2_grpc
from tests.conftest import identity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_may_spend_a_minute_at_once_then_goes_at_the_rate():
    clock = Clock()
    limiter = limits.RateLimiter({limits.VERIFY: 6}, clock=clock)
    for _ in range(6):
        limiter.check(limits.VERIFY, "operator")
    with pytest.raises(ResourceExhausted, match=r"operator called Verify more than 6 times a minute "
                                                r"\(SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN\); retry in 10 s"):
        limiter.check(limits.VERIFY, "operator")
    clock.now += 9.9  # not yet a whole token back
    with pytest.raises(ResourceExhausted, match="retry in 1 s"):
        limiter.check(limits.VERIFY, "operator")
    clock.now += 0.2
    limiter.check(limits.VERIFY, "operator")
    # Others, other methods and unlimited methods are not affected.
    limiter.check(limits.VERIFY, "ipv4:127.0.0.1")
    limiter.check(limits.TUNE, "operator")
    clock.now += 3600  # a long idle time refills only up to one minute's worth
    for _ in range(6):
        limiter.check(limits.VERIFY, "operator")
    with pytest.raises(ResourceExhausted):
        limiter.check(limits.VERIFY, "operator")


def test_rate_zero_is_no_limit():
    limiter = limits.RateLimiter({limits.TUNE: 0})
    for _ in range(1000):
        limiter.check(limits.TUNE, "operator")


def test_clients_are_certificates_or_addresses_without_ports():
    assert limits.client_key("planner", "ipv4:10.0.0.5:4711") == "planner"
    assert limits.client_key("", "ipv4:127.0.0.1:51234") == "ipv4:127.0.0.1"
    assert limits.client_key("", "ipv6:[::1]:51234") == "ipv6:[::1]"
    assert limits.client_key("", "unix:/run/schedcp.sock") == "unix:/run/schedcp.sock"


def native_artifact() -> policy_pb2.PolicyArtifact:
    meta = policies.load(policies.LIBRARY / "native" / "batch_sched_idle.toml")
    return policy_pb2.PolicyArtifact(name=meta.name, native=native_policies.build(
        meta, {}, [common_pb2.GroupMatcher(comm="stress-ng-cpu")]))


def verify_codes(addr: str, times: int, files: tls.TlsFiles | None) -> list[tuple[grpc.StatusCode, str]]:
    request = verifier_pb2.VerifyRequest(artifact=native_artifact(),
                                         target=verdict_pb2.TargetKernel(release="6.1.0-28-amd64"))

    async def once() -> tuple[grpc.StatusCode, str]:
        async with rpc.channel(addr, default_timeout_s=30, identity=files) as channel:
            try:
                async for _ in verifier_pb2_grpc.VerifierServiceStub(channel).Verify(request):
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""

    return [asyncio.run(once()) for _ in range(times)]


def test_a_tool_over_its_verify_limit_is_told_when_to_retry(services):
    services.env["SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN"] = "2"
    services.start("verifier")
    codes = verify_codes(services.addr("verifier"), 3, None)
    assert [code for code, _ in codes] == [grpc.StatusCode.OK, grpc.StatusCode.OK,
                                           grpc.StatusCode.RESOURCE_EXHAUSTED], codes
    assert "called Verify more than 2 times a minute" in codes[2][1] and "retry in 30 s" in codes[2][1]


def test_with_tls_the_planner_is_not_limited_and_the_operator_is(secured):
    services, certs = secured
    services.env["SCHEDCP_RATE_LIMIT_VERIFY_PER_MIN"] = "1"
    services.start("verifier")
    addr = services.addr("verifier")
    assert {code for code, _ in verify_codes(addr, 3, identity(certs, "planner"))} == {grpc.StatusCode.OK}
    operator = verify_codes(addr, 2, identity(certs, tls.OPERATOR))
    assert [code for code, _ in operator] == [grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED], operator
    assert operator[1][1].startswith("operator called Verify more than 1 times a minute")
