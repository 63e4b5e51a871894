"""Who may publish what on NATS, and how a process proves who it is.

Every schedcp process connects as its role (observer, planner, executor, verifier, learner;
`operator` for people's tools) with `SCHEDCP_NATS_USER` and the password in
`SCHEDCP_NATS_PASSWORD_FILE`, or with a NATS credentials file (`SCHEDCP_NATS_CREDS_FILE`,
decentralised JWT auth); `SCHEDCP_NATS_TLS_CA` turns on TLS to the server. Without any of
them the connection is anonymous, which a server with auth refuses.

`PUBLISH` is each role's publish allow-list: a role can only write the subjects, KV buckets
and Object Store it owns (an observer cannot publish an outcome, a planner cannot write the
policy repository). Reads (subscriptions, the JetStream API) are open to every authenticated
identity, and deleting streams is for the operator only. `schedcp up` runs its
nats-server with these users (`write_server_config`), so the local stack has auth on.
"""

from __future__ import annotations

import os
import secrets
import ssl
from pathlib import Path

from schedcp.runtime.config import Role, Settings
from schedcp.runtime.errors import StartupError

OPERATOR = "operator"
IDENTITIES = (*(r.value for r in Role), OPERATOR)

# What every service needs: the JetStream API (streams, consumers, KV reads), reply inboxes,
# message acks and flow control, its heartbeats, and dead-lettering a message it cannot use.
_COMMON = ("$JS.API.>", "_INBOX.>", "$JS.ACK.>", "$JS.FC.>", "schedcp.heartbeat.>", "schedcp.deadletter.>")
PUBLISH: dict[str, tuple[str, ...]] = {
    "observer": ("schedcp.profile.>", "$KV.schedcp_hosts.>"),
    # The planner's rollout steps go to the audit trail on schedcp.audit._rollout.<rollout>; a
    # replica asks the one running a rollout to pause, resume or abort it on schedcp.rollout_control.
    "planner": ("schedcp.cycle.>", "$KV.schedcp_planner.>", "$KV.schedcp_rollouts.>", "schedcp.audit._rollout.>",
                "schedcp.rollout_control.>"),
    "executor": ("schedcp.deployment.>", "schedcp.outcome.>", "schedcp.audit.>"),
    "verifier": ("$KV.schedcp_verdicts.>", "$O.schedcp_artifacts.>"),
    "learner": ("$KV.schedcp_policies.>", "$KV.schedcp_outcomes.>", "$O.schedcp_artifacts.>"),
    OPERATOR: (">",),
}
# (Purging stays allowed: storing an object again purges its old chunks.)
_DENIED_TO_SERVICES = ("$JS.API.STREAM.DELETE.>",)


def connect_options(settings: Settings) -> dict:
    """nats-py `connect` keyword arguments for this process's identity and TLS."""
    options: dict = {}
    if settings.nats_creds_file:
        options["user_credentials"] = settings.nats_creds_file
    if settings.nats_user:
        options["user"] = settings.nats_user
        try:
            options["password"] = Path(settings.nats_password_file).read_text().strip()
        except OSError as exc:
            raise StartupError(f"SCHEDCP_NATS_PASSWORD_FILE={settings.nats_password_file} cannot be read "
                               f"({exc.strerror})") from None
    if settings.nats_tls_ca:
        options["tls"] = ssl.create_default_context(cafile=settings.nats_tls_ca)
    return options


def password_file(auth_dir: Path, identity: str) -> Path:
    return auth_dir / f"{identity}.password"


def write_server_config(auth_dir: Path) -> Path:
    """Fresh passwords for every identity (files readable by their owner only) and a
    nats-server configuration with those users and their permissions; returns its path."""
    auth_dir.mkdir(parents=True, exist_ok=True)
    users = []
    for identity in IDENTITIES:
        password = secrets.token_urlsafe(24)
        _write_private(password_file(auth_dir, identity), password + "\n")
        allow = ", ".join(f'"{s}"' for s in (PUBLISH[identity] if identity == OPERATOR
                                            else (*_COMMON, *PUBLISH[identity])))
        deny = "" if identity == OPERATOR else ", deny: [" + ", ".join(f'"{s}"' for s in _DENIED_TO_SERVICES) + "]"
        users.append(f'    {{user: "{identity}", password: "{password}", '
                     f'permissions: {{publish: {{allow: [{allow}]{deny}}}, subscribe: {{allow: [">"]}}}}}}')
    config = auth_dir / "nats.conf"
    _write_private(config, "authorization {\n  users: [\n" + ",\n".join(users) + "\n  ]\n}\n")
    return config


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
