"""Approvals the verifier gave this planner lately, by the exact question asked.

A fleet asks the same question over and over: a thousand hosts of one kernel, one library
policy. The verifier answers a repeat from its signed cache, but asking still costs a call on
both sides for every host (a seventh of the central CPU per decision in the fleet bench). The
planner keeps each approval it received for MEMO_S, and never beyond the verdict's own
expiry, so a verifier restarted with new rules or a new key is asked again within a minute. A
memo changes nothing the host checks: the executor verifies the signed verdict itself (its
signature, digest, kernel and expiry) before it deploys. Rejections are not kept: asking again
is the only way a rejection caused by a starved sandbox turns into an answer.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from schedcp.v1 import verdict_pb2, verifier_pb2

MEMO_S = 60.0
# Margin before a verdict's expiry: the executor must still find it valid when it deploys.
EXPIRY_MARGIN_S = 300.0
MAX_ENTRIES = 1024


class VerdictMemo:
    """Approved verdicts by request, each for at most MEMO_S."""

    def __init__(self, memo_s: float = MEMO_S) -> None:
        self._memo_s = memo_s
        # By the request's digest: (until when, the verdict).
        self._kept: OrderedDict[bytes, tuple[float, verdict_pb2.Verdict]] = OrderedDict()

    def get(self, request: verifier_pb2.VerifyRequest) -> verdict_pb2.Verdict | None:
        key = _key(request)
        kept = self._kept.get(key)
        if kept is None:
            return None
        until, verdict = kept
        if time.time() >= until:
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        answer = verdict_pb2.Verdict()
        answer.CopyFrom(verdict)
        answer.cached = True
        return answer

    def put(self, request: verifier_pb2.VerifyRequest, verdict: verdict_pb2.Verdict) -> None:
        if not verdict.claims.approved:
            return
        now = time.time()
        until = min(now + self._memo_s, verdict.claims.expires_at.ToSeconds() - EXPIRY_MARGIN_S)
        if until <= now:
            return
        # Verdicts hold their artifact (source and object): the expired go at once.
        for stale in [key for key, (ends, _) in self._kept.items() if ends <= now]:
            del self._kept[stale]
        self._kept[_key(request)] = (until, verdict)
        while len(self._kept) > MAX_ENTRIES:
            self._kept.popitem(last=False)


def _key(request: verifier_pb2.VerifyRequest) -> bytes:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
