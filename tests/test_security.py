"""Mutual TLS and access control between services (schedcp/runtime/tls.py, schedcp/runtime/access.py), against
real service processes: callers without a certificate or with one from another CA are refused
at the handshake, a certificate of the wrong role cannot deploy, the planner's can; without
TLS a service refuses to listen beyond loopback."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc
import pytest

from schedcp.runtime import rpc, tls
from schedcp.runtime.config import ConfigError, load_settings
from schedcp.runtime.net import free_port
from schedcp.v1 import executor_pb2, executor_pb2_grpc, info_pb2, info_pb2_grpc, observer_pb2, observer_pb2_grpc
from tests.conftest import ROOT, identity
from tests.test_services import call


def deploy_as(addr: str, files: tls.TlsFiles | None) -> tuple[grpc.StatusCode, str]:
    async def go(channel):
        return [e async for e in executor_pb2_grpc.ExecutorServiceStub(channel).Deploy(executor_pb2.DeployRequest())]

    async def run():
        async with rpc.channel(addr, default_timeout_s=5, identity=files) as channel:
            return await go(channel)

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def test_only_certified_callers_of_the_right_role_may_deploy(secured, tmp_path):
    services, certs = secured
    services.start("executor")
    addr = services.addr("executor")
    stranger_ca = tmp_path / "other"
    tls.create_dev_certs(stranger_ca)

    code, _ = deploy_as(addr, None)  # plaintext
    assert code == grpc.StatusCode.UNAVAILABLE
    # A certificate from another CA (the caller trusts the real server): refused at the handshake.
    code, _ = deploy_as(addr, identity(stranger_ca, "planner", ca=certs / "ca.pem"))
    assert code == grpc.StatusCode.UNAVAILABLE
    code, details = deploy_as(addr, identity(certs, "executor"))
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    assert "Deploy may be called only with a planner or operator certificate" in details
    assert "'executor'" in details
    # The planner's certificate gets past access control to the request's own checks.
    code, details = deploy_as(addr, identity(certs, "planner"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details


def test_tls_without_a_client_certificate_is_refused(secured):
    services, certs = secured
    services.start("executor")
    credentials = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())

    async def run():
        async with grpc.aio.secure_channel(services.addr("executor"), credentials) as channel:
            await info_pb2_grpc.InfoServiceStub(channel).GetServiceInfo(info_pb2.GetServiceInfoRequest(), timeout=5)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(run())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_measure_is_for_executors_and_planners_and_reads_are_for_everyone(secured):
    services, _ = secured
    services.start("observer")
    addr = services.addr("observer")
    info = call(addr, lambda ch: info_pb2_grpc.InfoServiceStub(ch).GetServiceInfo(info_pb2.GetServiceInfoRequest()))
    assert info.role == "observer"  # the operator may read
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(addr, lambda ch: observer_pb2_grpc.ObserverServiceStub(ch).Measure(observer_pb2.MeasureRequest()))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "executor or planner certificate" in caught.value.details()


def test_without_tls_a_service_listens_on_loopback_only(services):
    env = {**services.env, "SCHEDCP_LEARNER_ADDR": f"0.0.0.0:{free_port()}"}
    done = subprocess.run([sys.executable, "-m", "services.learner"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "is not a loopback address, and without TLS schedcp listens on loopback only" in done.stderr


def test_tls_files_are_set_together():
    with pytest.raises(ConfigError, match="set SCHEDCP_TLS_CERT, SCHEDCP_TLS_KEY and SCHEDCP_TLS_CA together"):
        load_settings(tls_cert="/etc/schedcp/planner.pem")
