"""Reading a BPF map through the bpf(2) system call, whoever loaded it (BCC in this process, or
schedcp-loader in a child): the per-thread counters' layout, batch lookups and deletes, and
copying a map's descriptor out of another process."""

from __future__ import annotations

import array
import ctypes
import errno
import os
import platform

from services.observer.histogram import SLOTS


class BpfUnavailable(Exception):
    """BPF sampling cannot run here; the message says why in one sentence."""


class ThreadStats(ctypes.Structure):
    """struct thread_stats of runqlat.bpf.c, field for field (the reader checks the size)."""

    _fields_ = [
        ("runq_slots", ctypes.c_uint64 * SLOTS),
        ("runq_delay_ns", ctypes.c_uint64),
        ("runs", ctypes.c_uint64),
        ("wakeup_slots", ctypes.c_uint64 * SLOTS),
        ("wakeup_delay_ns", ctypes.c_uint64),
        ("wakeup_runs", ctypes.c_uint64),
        ("response_slots", ctypes.c_uint64 * SLOTS),
        ("response_ns", ctypes.c_uint64),
        ("responses", ctypes.c_uint64),
        ("wakeups", ctypes.c_uint64),
        ("cpu_ns", ctypes.c_uint64),
        ("voluntary", ctypes.c_uint64),
        ("involuntary", ctypes.c_uint64),
        ("born_ns", ctypes.c_uint64),
        ("exited_ns", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
    ]


# The value struct as 64-bit words: where each field starts.
STRIDE = ctypes.sizeof(ThreadStats) // 8
WORD = {name: getattr(ThreadStats, name).offset // 8 for name, _ in ThreadStats._fields_}

_SYSCALLS = {"x86_64": {"bpf": 321, "pidfd_getfd": 438}, "aarch64": {"bpf": 280, "pidfd_getfd": 438}}
_BPF_MAP_DELETE_ELEM = 3
_BPF_OBJ_GET_INFO_BY_FD = 15
_BPF_MAP_LOOKUP_BATCH = 24
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(name: str, *args) -> int:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise BpfUnavailable(f"reading BPF maps is not implemented for {platform.machine()}")
    result = _libc.syscall(ctypes.c_long(numbers[name]), *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{name} failed: {os.strerror(code)}")
    return result


class _BatchAttr(ctypes.Structure):
    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64), ("keys", ctypes.c_uint64),
                ("values", ctypes.c_uint64), ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _ElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info (the kernel fills as much as it is given)."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32)]


def _bpf(command: int, attr: ctypes.Structure) -> int:
    return _syscall("bpf", ctypes.c_int(command), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))


class StatsMap:
    """The `stats` map (u32 thread id -> ThreadStats) behind a descriptor; buffers for the whole
    map are kept between reads (this runs for every thread every interval). The map's own
    description (however it was loaded) gives its size and must match the reader's layout."""

    def __init__(self, fd: int) -> None:
        info = _MapInfo()
        try:
            _bpf(_BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                                                    info=ctypes.addressof(info)))
        except OSError as exc:
            raise BpfUnavailable(f"cannot read the stats map's description: {exc.strerror}") from exc
        expected = ctypes.sizeof(ThreadStats)
        if (info.key_size, info.value_size) != (ctypes.sizeof(ctypes.c_uint32), expected):
            raise BpfUnavailable(f"the stats map holds {info.key_size}-byte keys and {info.value_size}-byte values; "
                                 f"the reader expects 4 and {expected} (runqlat.bpf.c's thread_stats)")
        self.fd = fd
        self.keys = (ctypes.c_uint32 * info.max_entries)()
        self.values = (ThreadStats * info.max_entries)()

    def lookup_all(self) -> int:
        """Copy every entry into `keys`/`values` with BPF_MAP_LOOKUP_BATCH; returns how many."""
        batch = ctypes.c_uint32(0)
        total, capacity = 0, len(self.keys)
        key_size, value_size = ctypes.sizeof(ctypes.c_uint32), ctypes.sizeof(ThreadStats)
        base_keys, base_values = ctypes.addressof(self.keys), ctypes.addressof(self.values)
        while total < capacity:
            attr = _BatchAttr(in_batch=ctypes.addressof(batch) if total else 0, out_batch=ctypes.addressof(batch),
                              keys=base_keys + key_size * total, values=base_values + value_size * total,
                              count=capacity - total, map_fd=self.fd)
            try:
                _bpf(_BPF_MAP_LOOKUP_BATCH, attr)
            except OSError as exc:
                total += attr.count  # the last chunk's entries are copied even when it says ENOENT
                if exc.errno != errno.ENOENT:
                    raise OSError(exc.errno, f"BPF_MAP_LOOKUP_BATCH failed: {os.strerror(exc.errno)}") from exc
                break
            total += attr.count
        return total

    def words(self, count: int) -> array.array:
        """A copy of the first `count` values as 64-bit words (STRIDE per entry, fields at WORD):
        indexing it is far cheaper than reading ctypes fields entry by entry."""
        return array.array("Q", bytes(memoryview(self.values).cast("B")[:count * STRIDE * 8]))

    def delete(self, tid: int) -> None:
        key = ctypes.c_uint32(tid)
        try:
            _bpf(_BPF_MAP_DELETE_ELEM, _ElemAttr(map_fd=self.fd, key=ctypes.addressof(key)))
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # already gone
                raise


def take_fd(pid: int, fd: int) -> int:
    """A copy of process `pid`'s descriptor `fd` in this process (pidfd_getfd, Linux 5.6; the
    caller must be allowed to ptrace it, as a parent running as root is)."""
    pidfd = os.pidfd_open(pid)
    try:
        return _syscall("pidfd_getfd", ctypes.c_int(pidfd), ctypes.c_int(fd), ctypes.c_uint(0))
    except OSError as exc:
        raise BpfUnavailable(f"cannot take the loader's map descriptor: {exc.strerror}") from exc
    finally:
        os.close(pidfd)
