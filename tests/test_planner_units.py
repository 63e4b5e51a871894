"""The planner's parts that need no service: its memo of the verifier's approvals, and when it
asks the learner again."""

from __future__ import annotations

import time

from schedcp.v1 import learner_pb2, policy_pb2, verdict_pb2, verifier_pb2
from services.planner import planning, verdict_memo
from services.planner.verdict_memo import VerdictMemo


def request(name: str = "batch", release: str = "6.12.0") -> verifier_pb2.VerifyRequest:
    return verifier_pb2.VerifyRequest(artifact=policy_pb2.PolicyArtifact(name=name, digest=f"sha256:{name}"),
                                      target=verdict_pb2.TargetKernel(release=release))


def verdict(approved: bool = True, expires_in_s: float = 86400) -> verdict_pb2.Verdict:
    v = verdict_pb2.Verdict(summary="approved" if approved else "rejected")
    v.claims.approved = approved
    v.claims.expires_at.FromNanoseconds(int((time.time() + expires_in_s) * 1e9))
    return v


def test_an_approval_answers_the_same_question_only():
    memo = VerdictMemo()
    memo.put(request(), verdict())
    again = memo.get(request())
    assert again is not None and again.claims.approved and again.cached
    assert memo.get(request(release="6.13.0")) is None and memo.get(request(name="fifo")) is None


def test_a_rejection_is_asked_again():
    memo = VerdictMemo()
    memo.put(request(), verdict(approved=False))
    assert memo.get(request()) is None


def test_an_approval_is_kept_for_its_time_and_never_near_its_expiry(monkeypatch):
    memo = VerdictMemo(memo_s=60)
    memo.put(request(), verdict())
    memo.put(request(name="near"), verdict(expires_in_s=verdict_memo.EXPIRY_MARGIN_S - 1))
    assert memo.get(request(name="near")) is None
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 59)
    assert memo.get(request()) is not None
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert memo.get(request()) is None


def test_the_memo_keeps_the_newest_entries(monkeypatch):
    monkeypatch.setattr(verdict_memo, "MAX_ENTRIES", 3)
    memo = VerdictMemo()
    for name in ("a", "b", "c"):
        memo.put(request(name), verdict())
    memo.get(request("a"))  # used: kept over b
    memo.put(request("d"), verdict())
    assert [memo.get(request(n)) is not None for n in "abcd"] == [True, False, True, True]


def test_the_learner_is_asked_again_for_a_goal_only_when_it_knows_something():
    untested = learner_pb2.PolicyMatch(policy=policy_pb2.PolicyRecord(), reason="untested here")
    learned = learner_pb2.PolicyMatch(policy=policy_pb2.PolicyRecord(), confidence=0.4)
    avoided = learner_pb2.AntiPattern(policy_name="fifo", regressions=2)
    assert planning._knows_nothing(learner_pb2.SearchPoliciesResponse(matches=[untested]))
    assert not planning._knows_nothing(learner_pb2.SearchPoliciesResponse(matches=[untested, learned]))
    assert not planning._knows_nothing(learner_pb2.SearchPoliciesResponse(matches=[untested], avoid=[avoided]))
    assert not planning._knows_nothing(None)  # the learner could not be asked: try again
