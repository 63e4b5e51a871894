"""Small address helpers shared by the service runtime and the local stack."""

from __future__ import annotations

import ipaddress
import socket


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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel just reported free (for tests, benchmarks and private stacks)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
