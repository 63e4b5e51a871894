"""Asks a running service how it is: grpc.health.v1 and schedcp.v1.InfoService."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from schedcp.runtime import rpc
from schedcp.runtime.config import Role, Settings
from schedcp.v1 import info_pb2, info_pb2_grpc


@dataclass
class ServiceStatus:
    """One service's answer (or why there was none)."""

    role: str
    addr: str
    health: str
    info: info_pb2.ServiceInfo | None = None
    error: str = ""

    @property
    def serving(self) -> bool:
        return self.health == "SERVING"

    def as_dict(self) -> dict:
        info = json_format.MessageToDict(self.info) if self.info else {}
        return {"role": self.role, "addr": self.addr, "health": self.health, "error": self.error, "info": info}


async def probe(role: str, addr: str, timeout_s: float = 2.0) -> ServiceStatus:
    async with rpc.channel(addr, default_timeout_s=timeout_s) as channel:
        try:
            check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            health = health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)
            info = await info_pb2_grpc.InfoServiceStub(channel).GetServiceInfo(info_pb2.GetServiceInfoRequest())
        except grpc.aio.AioRpcError as exc:
            unreachable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            reason = f"unreachable ({exc.code().name})" if unreachable else exc.details()
            return ServiceStatus(role, addr, "DOWN" if unreachable else "ERROR", error=reason)
    if info.role and info.role != role:
        return ServiceStatus(role, addr, "ERROR", info=info,
                             error=f"the {info.role} answers at {addr}, not the {role}: two services were given one "
                                   "address")
    return ServiceStatus(role, addr, health, info=info)


async def probe_all(settings: Settings, timeout_s: float = 2.0) -> list[ServiceStatus]:
    """Every service of the stack, in the order they are listed in Role."""
    return list(await asyncio.gather(*(probe(r.value, settings.addr(r), timeout_s) for r in Role)))
