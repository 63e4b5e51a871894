"""Which processes just started a program: the kernel's process events connector.

A native policy applies to matched processes "existing and new". Found by a rescan of /proc once
a second, a job that lives a few seconds (hackbench, a compiler) ran its first part under the
old settings, and the children it forked in its first milliseconds kept them: they inherit
their parent's settings at fork, before any rescan sees them. The connector (NETLINK_CONNECTOR,
CN_IDX_PROC; root, CONFIG_PROC_EVENTS) tells every exec and rename as it happens, so the
executor can apply the policy to the process before it forks its workers.

Wire format (linux/connector.h, linux/cn_proc.h): a netlink header, a cn_msg, then a
proc_event: `what`, cpu, timestamp, and for exec (and comm) the pid and tgid first.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
PROC_EVENT_NONE = 0  # the answer to a subscription: an error number follows the event's header
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_COMM = 0x00000200
_NLMSG = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT = struct.Struct("=IIQII")  # what, cpu, timestamp_ns, then two words of the event's data
_EVENT_AT = _NLMSG.size + _CN_MSG.size
ACK_WAIT_S = 1.0
# After the first event, how long to gather more before acting: a batch of jobs starts together.
GATHER_S = 0.005
# How often a wait for events checks whether the subscription is being closed.
POLL_S = 0.1
RECEIVE_BYTES = 1 << 20


class Unavailable(Exception):
    """The connector cannot be opened here (not root, or a kernel without CONFIG_PROC_EVENTS)."""


class ProcEvents:
    """A subscription to exec and rename events; `close()` ends it."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise Unavailable(f"no process events connector: {exc.strerror or exc}") from exc
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BYTES)
            self._sock.bind((0, CN_IDX_PROC))
            listen = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, 4, 0) + struct.pack("=I", PROC_CN_MCAST_LISTEN)
            self._sock.send(_NLMSG.pack(_NLMSG.size + len(listen), NLMSG_DONE, 0, 0, 0) + listen)
            _acknowledged(self._sock)
        except OSError as exc:
            self._sock.close()
            raise Unavailable(f"cannot listen to process events: {exc.strerror or exc}") from exc
        except Unavailable:
            self._sock.close()
            raise
        self._in_use = threading.Lock()
        self._closing = threading.Event()

    def started(self, timeout_s: float) -> set[int] | None:
        """The processes that exec'd or renamed themselves, gathered from the first such event
        (waiting up to `timeout_s` for it) for GATHER_S more; empty when none came. None when
        events were lost (the kernel's queue overflowed) or the subscription is closing: look
        at every process instead. Unavailable when the socket failed. Blocking: run it in a
        worker thread."""
        found: set[int] = set()
        deadline = time.monotonic() + timeout_s
        with self._in_use:
            while (left := deadline - time.monotonic()) > 0:
                if self._closing.is_set():
                    return None
                try:
                    self._sock.settimeout(min(left, POLL_S))
                    data = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:
                        return None
                    raise Unavailable(f"process events ended: {exc.strerror or exc}") from exc
                if pid := _started_pid(data):
                    if not found:
                        deadline = min(deadline, time.monotonic() + GATHER_S)
                    found.add(pid)
        return found

    def close(self) -> None:
        """End the subscription: a wait in progress returns within POLL_S, then the socket is
        closed (never under a thread still reading it: its number could be another's by then).
        Blocking."""
        self._closing.set()
        with self._in_use:
            self._sock.close()


def _acknowledged(sock: socket.socket) -> None:
    """Wait for the kernel's answer to the subscription (PROC_EVENT_NONE, with an error number:
    EPERM without CAP_NET_ADMIN); other events may come first."""
    deadline = time.monotonic() + ACK_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        event = _event(data)
        if event is not None and event[0] == PROC_EVENT_NONE:
            if err := event[1]:
                raise Unavailable(f"the kernel refused the process events subscription: {os.strerror(err)}")
            return
    raise Unavailable(f"the kernel did not answer the process events subscription within {ACK_WAIT_S:g} s")


def _started_pid(data: bytes) -> int:
    """The process (tgid) an exec or rename event is about; 0 for any other event."""
    event = _event(data)
    return event[2] if event is not None and event[0] in (PROC_EVENT_EXEC, PROC_EVENT_COMM) else 0


def _event(data: bytes) -> tuple[int, int, int] | None:
    """A message's event kind and the two words after its header (exec and rename: pid and tgid;
    a subscription's answer: its error number first); None for a message too short to hold one."""
    if len(data) < _EVENT_AT + _EVENT.size:
        return None
    what, _cpu, _at, first, second = _EVENT.unpack_from(data, _EVENT_AT)
    return what, first, second
