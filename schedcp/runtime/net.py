"""Small address helpers shared by the service runtime and the local stack."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection


def split_address(addr: str) -> tuple[str, int]:
    """"127.0.0.1:50051" -> ("127.0.0.1", 50051); "[::1]:50051" -> ("::1", 50051)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def port_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind host:port now (port 0 is always free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1", avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct TCP ports the kernel just reported free, none of them in `avoid` (ports
    given to listeners that have not bound yet). All are held until all are found: a port
    released and asked for again can come back, and two services given one address made a
    private stack's status report the one that could not listen as serving."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            held.append(sock)
            sock.bind((host, 0))
            if (port := sock.getsockname()[1]) not in avoid:
                ports.append(port)
        return ports
    finally:
        for sock in held:
            sock.close()


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A TCP port the kernel just reported free, not one of `avoid` (for tests, benchmarks and
    private stacks)."""
    return free_ports(1, host, avoid)[0]


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
