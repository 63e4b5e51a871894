"""Per-client rate limits on the calls that start expensive work: `Tune` (a decision cycle that
changes a host) and `Verify` (a compile and a micro-VM boot when the verdict is not cached).

Each client has a token bucket per limited call: it holds up to a minute's worth of calls and
refills continuously, so a client may burst its whole minute and then goes at the set rate. A
call with no token left is RESOURCE_EXHAUSTED, saying when to retry. The client is its
certificate's identity with TLS, or its address without the port without TLS (every local tool
and service then shares one bucket: one machine, one budget). With TLS, the control plane's own
services (a planner verifying candidates for a fleet) are not limited: they bound their work
themselves (SCHEDCP_PLANNER_MAX_CYCLES, SCHEDCP_VERIFIER_VM_SLOTS); the limits are for tools
and people.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from schedcp.runtime.config import Role
from schedcp.runtime.errors import ResourceExhausted

TUNE = "/schedcp.v1.PlannerService/Tune"
VERIFY = "/schedcp.v1.VerifierService/Verify"
UNLIMITED_ROLES = frozenset(role.value for role in Role)

# Buckets of clients not seen for longest are dropped beyond this many (a full bucket again on
# return, which is what an idle client would have anyway).
MAX_CLIENTS = 4096


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now


class RateLimiter:
    """Token buckets by (method, client) for the methods given a rate in calls per minute."""

    def __init__(self, per_minute: dict[str, int], clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = {method: rate for method, rate in per_minute.items() if rate > 0}
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, method: str, client: str) -> None:
        """Take one token of `client`'s bucket for `method`, or raise ResourceExhausted."""
        rate = self._per_minute.get(method)
        if rate is None:
            return
        with self._lock:
            now = self._clock()
            bucket = self._refilled(method, client, rate, now)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return
            wait_s = math.ceil((1 - bucket.tokens) * 60 / rate)
        name = method.rsplit("/", 1)[-1]
        raise ResourceExhausted(f"{client} called {name} more than {rate} times a minute "
                                f"(SCHEDCP_RATE_LIMIT_{name.upper()}_PER_MIN); retry in {wait_s} s")

    def _refilled(self, method: str, client: str, rate: int, now: float) -> _Bucket:
        key = (method, client)
        bucket = self._buckets.pop(key, None) or _Bucket(float(rate), now)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return bucket


def client_key(identity: str, peer: str) -> str:
    """Who a call is counted against: the certificate identity, else the peer address without
    its port ("ipv4:127.0.0.1:51234" -> "ipv4:127.0.0.1")."""
    if identity:
        return identity
    address, _, port = peer.rpartition(":")
    return address if port.isdigit() and address else peer
