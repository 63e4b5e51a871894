"""Who may call what. With TLS on, a caller is its certificate's identity (schedcp/runtime/tls.py);
calls that change a host or the repository are limited to the roles that need them, and every
other call is open to any caller with a certificate from the schedcp CA. Without TLS the
services listen on loopback only and nothing is checked here: the host's own users are trusted.
"""

from __future__ import annotations

from schedcp.runtime.errors import PermissionDenied
from schedcp.runtime.tls import OPERATOR, role_of

# Method -> the roles allowed to call it (operator: the `schedcp` CLI's certificate).
RESTRICTED: dict[str, tuple[str, ...]] = {
    "/schedcp.v1.ExecutorService/Deploy": ("planner", OPERATOR),
    "/schedcp.v1.ExecutorService/Rollback": ("planner", OPERATOR),
    "/schedcp.v1.ObserverService/Measure": ("executor", "planner"),
    "/schedcp.v1.LearnerService/PutPolicy": ("planner", OPERATOR),
    "/schedcp.v1.PlannerService/Tune": ("planner", OPERATOR),
    "/schedcp.v1.PlannerService/SetAuto": ("planner", OPERATOR),
    "/schedcp.v1.RolloutService/StartRollout": (OPERATOR,),
    "/schedcp.v1.RolloutService/PauseRollout": (OPERATOR,),
    "/schedcp.v1.RolloutService/ResumeRollout": (OPERATOR,),
    "/schedcp.v1.RolloutService/AbortRollout": (OPERATOR,),
    "/schedcp.v1.RolloutService/ApproveRollout": (OPERATOR,),
}


def check(method: str, identity: str) -> None:
    """PermissionDenied unless `identity` may call `method`."""
    allowed = RESTRICTED.get(method)
    if allowed is None or role_of(identity) in allowed:
        return
    name = method.rsplit("/", 1)[-1]
    raise PermissionDenied(f"{name} may be called only with a {' or '.join(allowed)} certificate; "
                           f"the caller's names {identity or 'no identity'!r}")
