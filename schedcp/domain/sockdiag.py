"""Unix stream sockets and who is connected to whom, from the kernel's sock_diag netlink
interface: /proc/net/unix shows each socket's address but not its peer, so a client of a local
server over a unix socket (pgbench and psql by default, redis-benchmark -s, php-fpm behind a
web server) is only told apart here.

One dump lists every unix socket of the caller's network namespace (a few hundred bytes each).
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4  # (not every Python names it)
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW_NAME, UDIAG_SHOW_PEER = 0x1, 0x4
UNIX_DIAG_NAME, UNIX_DIAG_PEER = 0, 2
# A unix socket's sk_state takes TCP's values.
ESTABLISHED, LISTEN = 1, 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_REQUEST = struct.Struct("=BBHIIIII")  # unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
_MESSAGE = struct.Struct("=BBBBIII")  # unix_diag_msg: family, type, state, pad, ino, cookie[2]
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
_ALL_STATES = 0xFFFFFFFF
_NO_COOKIE = 0xFFFFFFFF


class UnixSocket(NamedTuple):
    """One unix socket: its state, the address it is bound to (b"" when unbound; an accepted
    connection carries its listener's), and the inode of the socket at its other end (0: none)."""

    state: int
    name: bytes
    peer: int


def unix_sockets() -> dict[int, UnixSocket]:
    """Every unix stream socket of this process's network namespace, by inode. Raises OSError
    where the kernel has no sock_diag for unix sockets (CONFIG_UNIX_DIAG)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
        request = _REQUEST.pack(socket.AF_UNIX, 0, 0, _ALL_STATES, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
                                _NO_COOKIE, _NO_COOKIE)
        link.send(_HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                  + request)
        found: dict[int, UnixSocket] = {}
        while True:
            data = link.recv(1 << 20)
            if not data:
                return found
            for kind, body in _messages(data):
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", body)[0]
                    raise OSError(error, f"sock_diag refused the dump of unix sockets: errno {error}")
                _, sock_type, state, _, inode, _, _ = _MESSAGE.unpack_from(body)
                if sock_type == socket.SOCK_STREAM:
                    found[inode] = UnixSocket(state, *_name_and_peer(body[_MESSAGE.size:]))


def _messages(data: bytes):
    """(type, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, data[offset + _HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _name_and_peer(attributes: bytes) -> tuple[bytes, int]:
    name, peer, offset = b"", 0, 0
    while offset + _ATTRIBUTE.size <= len(attributes):
        length, kind = _ATTRIBUTE.unpack_from(attributes, offset)
        if length < _ATTRIBUTE.size:
            break
        value = attributes[offset + _ATTRIBUTE.size:offset + length]
        if kind == UNIX_DIAG_NAME:
            name = value
        elif kind == UNIX_DIAG_PEER:
            peer = struct.unpack_from("=I", value)[0]
        offset += (length + 3) & ~3
    return name, peer
