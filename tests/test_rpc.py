"""Shared client channels (rpc.shared): one open channel per peer, reused by every call, and a
peer that restarted is reached again by the very next call."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from schedcp.runtime import rpc


async def serving(port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


async def check(target: str, timeout_s: float = 5.0) -> grpc.aio.Channel:
    """The gRPC channel the call went over (under the borrower's tracing wrapper)."""
    async with rpc.shared(target, timeout_s) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        return channel._channel


def test_calls_to_one_peer_share_one_channel_until_closed():
    async def scenario():
        server, port = await serving()
        try:
            # Another deadline is the borrower's own: the same connection.
            first, second = await check(f"127.0.0.1:{port}"), await check(f"127.0.0.1:{port}", 60.0)
            other = await check(f"localhost:{port}")
            await rpc.close_shared()
            after = await check(f"127.0.0.1:{port}")
            await rpc.close_shared()
            return first, second, other, after
        finally:
            await server.stop(None)

    first, second, other, after = asyncio.run(scenario())
    assert first is second and other is not first and after is not first


def test_a_restarted_peer_is_reached_by_the_next_call():
    async def scenario():
        server, port = await serving()
        target = f"127.0.0.1:{port}"
        before = await check(target)
        await server.stop(None)
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await check(target)
        server, _ = await serving(port)
        try:
            # No waiting: the channel that met the stopped peer was dropped, not left backing off.
            after = await check(target)
        finally:
            await server.stop(None)
            await rpc.close_shared()
        return before, down.value.code(), after

    before, code, after = asyncio.run(scenario())
    assert code == grpc.StatusCode.UNAVAILABLE and after is not before
