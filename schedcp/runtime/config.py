"""Configuration for every schedcp process.

Settings come from, highest priority first: `SCHEDCP_*` environment variables, the optional
TOML file named by `SCHEDCP_CONFIG_FILE` (keys are the variable names without the prefix, in
lower case), and the defaults below. The standard `OTEL_*` variables are read by the
OpenTelemetry SDK itself (see docs/configuration.md).

A mistake in any of them is a `ConfigError` whose message names the variable, what is wrong,
and how to fix it; processes print it as one line and exit with status 2.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "SCHEDCP_"
CONFIG_FILE_VAR = "SCHEDCP_CONFIG_FILE"

_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


class ConfigError(Exception):
    """A setting is missing, malformed or unusable; the message says which and how to fix it."""


class Role(StrEnum):
    """The five schedcp services."""

    OBSERVER = "observer"
    PLANNER = "planner"
    EXECUTOR = "executor"
    VERIFIER = "verifier"
    LEARNER = "learner"


def _check_address(value: str) -> str:
    match = _ADDRESS.match(value)
    if not match or not 0 <= int(match["port"]) <= 65535:
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:50051 or [::1]:50051")
    return value


def _check_host_id(value: str) -> str:
    if not _HOST_ID.match(value):
        raise ValueError(
            "expected 1-63 letters, digits, '-' or '_' starting with a letter or digit "
            "(it becomes a NATS subject token and a KV key)"
        )
    return value


def _check_nats_url(value: str) -> str:
    for server in value.split(","):
        if not re.match(r"^(nats|tls|ws|wss)://[^\s/]+$", server.strip()):
            raise ValueError("expected nats://HOST:PORT (several separated by commas)")
    return value


Address = Annotated[str, AfterValidator(_check_address)]
OptionalAddress = Annotated[str, AfterValidator(lambda value: value and _check_address(value))]


def _check_profile_interval(value: float) -> float:
    if value != 0 and value < 0.5:
        raise ValueError("must be 0 (no periodic profiles) or at least 0.5 seconds")
    return value


def _check_trust_keys(value: str) -> str:
    for key in filter(None, (k.strip() for k in value.split(","))):
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key.lower()):
            raise ValueError(f"{key[:20]!r} is not an Ed25519 public key in hex (64 hex digits)")
    return value


def default_host_id() -> str:
    """This machine's short hostname, made into a valid host id."""
    short = socket.gethostname().split(".")[0]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", short).strip("-_")[:63]
    return cleaned or "localhost"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "schedcp"


def default_data_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "schedcp"


# The most kept candidates one tune cycle may compare (SCHEDCP_TUNE_BUDGET, `schedcp tune --budget`,
# TuneRequest.budget): each is a canary of its own.
MAX_TUNE_BUDGET = 10


class Settings(BaseSettings):
    """Every setting a schedcp process reads. Field names map to `SCHEDCP_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    host_id: Annotated[str, AfterValidator(_check_host_id)] = Field(
        default_factory=default_host_id,
        description="Identity of this host in subjects, the host registry and traces.",
    )
    nats_url: Annotated[str, AfterValidator(_check_nats_url)] = Field(
        default="nats://127.0.0.1:4222", description="NATS server(s) to connect to, comma separated."
    )
    nats_connect_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Seconds to wait for NATS at start before giving up."
    )
    nats_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of streams and buckets (3 in a cluster)."
    )
    nats_user: str = Field(default="", description="NATS user (this process's role), with SCHEDCP_NATS_PASSWORD_FILE.")
    nats_password_file: str = Field(default="", description="File holding the NATS user's password.")
    nats_creds_file: str = Field(default="", description="NATS credentials file (JWT and nkey seed) instead of a user.")
    nats_tls_ca: str = Field(default="", description="CA certificate (PEM) for TLS to NATS; empty: plain TCP.")
    observer_addr: Address = Field(default="127.0.0.1:50051", description="Observer gRPC address.")
    planner_addr: Address = Field(default="127.0.0.1:50052", description="Planner gRPC address.")
    executor_addr: Address = Field(default="127.0.0.1:50053", description="Executor gRPC address.")
    verifier_addr: Address = Field(default="127.0.0.1:50054", description="Verifier gRPC address.")
    learner_addr: Address = Field(default="127.0.0.1:50055", description="Learner gRPC address.")
    observer_advertise_addr: OptionalAddress = Field(
        default="",
        description="The address other machines reach this host's observer by, as registered for the planner "
        "(behind NAT, port forwards, or listening on 0.0.0.0); empty: the address it listens on.",
    )
    executor_advertise_addr: OptionalAddress = Field(
        default="", description="The same for this host's executor; empty: SCHEDCP_EXECUTOR_ADDR.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="State: NATS store of the local stack, logs, keys, journals.",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Downloads and builds that can be remade: sandbox kernels, libbpf, the loader, compiled policies.",
    )
    loader_path: str = Field(
        default="",
        description="A prebuilt schedcp-loader for the executor's sched_ext schedulers (hosts without a "
        "compiler); empty: built once in the cache dir.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe log level printed."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text for people or JSON for collectors."
    )
    rpc_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Deadline for outgoing unary calls, and for incoming ones whose caller set none.",
    )
    shutdown_grace_s: float = Field(
        default=5.0, ge=0, le=300, description="Seconds in-flight calls get to finish on SIGTERM."
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, le=300, description="How often services announce themselves on NATS."
    )
    observer_mode: Literal["auto", "procfs", "bpf"] = Field(
        default="auto", description="Observer sampling: BPF when possible (auto), procfs only, or BPF required."
    )
    observer_bpf_object: str = Field(
        default="",
        description="The observer's probes compiled ahead of time (`python -m services.observer.prebuilt OUT`), "
        "loaded with SCHEDCP_LOADER_PATH's loader where BCC cannot run (no compiler or kernel headers: the fleet "
        "host image ships them); empty: BCC or procfs only.",
    )
    profile_interval_s: Annotated[float, AfterValidator(_check_profile_interval)] = Field(
        default=5.0, le=3600,
        description="The observer profiles the host continuously in windows this long and publishes each; 0: off.",
    )
    verifier_vm_slots: int = Field(
        default=1, ge=1, le=64,
        description="Sandbox micro-VMs the verifier runs at once; further requests queue.",
    )
    verifier_memory_budget_mib: float = Field(
        default=16.0, gt=0, le=65536,
        description="Kernel memory a sched_ext scheduler's maps and global data may take (MiB, reckoned for the "
        "reference machine of docs/verifier.md); more is rejected at the compile stage.",
    )
    planner_auto: bool = Field(
        default=False, description="The planner tunes a host on its own when its workload changes (profile drift)."
    )
    planner_min_interval_s: float = Field(
        default=600.0, ge=0, description="Least time between two automatic tunings of one host."
    )
    planner_max_cycles: int = Field(
        default=128, ge=1, le=4096,
        description="Most automatic cycles one planner runs at once; more wait their turn.",
    )
    planner_lease_s: float = Field(
        default=15.0, ge=1, le=300,
        description="A planner replica's lease on each cycle it runs: renewed while it runs; once expired, "
                    "another replica records the cycle's end.",
    )
    canary_window_s: float = Field(
        default=5.0, ge=1, le=600,
        description="How long a host's executor measures the baseline, then the canary, of a deployment the "
        "planner starts.",
    )
    tune_budget: int = Field(
        default=2, ge=1, le=MAX_TUNE_BUDGET,
        description="Kept candidates a tune cycle compares for a workload the learner has no proven policy for, "
        "each canary from the same baseline, keeping the one that improved most (a search; 1: the first kept "
        "wins). A proven one (kept before on a similar workload, ranked first) is deployed alone. `schedcp tune "
        "--budget` overrides both per cycle.",
    )
    rollout_concurrency: int = Field(
        default=32, ge=1, le=1024,
        description="Most hosts a rollout deploys to at once (each a decision cycle with its canary).",
    )
    rollout_max_rollback_fraction: float = Field(
        default=0.2, ge=0, lt=1,
        description="A rollout's wave regresses when more than this fraction of its hosts did not keep the policy.",
    )
    rollout_proposals: Literal["off", "propose", "start"] = Field(
        default="propose",
        description="When an automatic cycle makes a policy proven in a class that has more hosts: propose a rollout "
                    "of it to the class (an operator starts it with `schedcp rollout approve`), start that rollout "
                    "at once (start), or neither (off).",
    )
    goal_provider: Literal["rules", "openai"] = Field(
        default="rules", description="How the planner infers goals: deterministic rules, or an LLM."
    )
    llm_model: str = Field(default="gpt-4o-mini", min_length=1, description="Model name sent to the LLM endpoint.")
    llm_timeout_s: float = Field(default=20.0, gt=0, le=300, description="Deadline of one LLM call.")
    llm_max_retries: int = Field(default=2, ge=0, le=10, description="Retries of a failed LLM call (timeouts, 5xx).")
    llm_token_budget: int = Field(
        default=20000, ge=0, description="Most tokens (input + output) the LLM may use in one decision cycle."
    )
    llm_max_output_tokens: int = Field(
        default=0, ge=0, description="Most tokens one LLM answer may have (the request's max_tokens); 0 leaves it "
        "to the endpoint. An answer cut short is invalid JSON, repaired or fallen back from like any other.",
    )
    llm_usd_per_mtok_input: float = Field(default=0.15, ge=0, description="Price per million input tokens.")
    llm_usd_per_mtok_output: float = Field(default=0.60, ge=0, description="Price per million output tokens.")
    trusted_verifier_keys: Annotated[str, AfterValidator(_check_trust_keys)] = Field(
        default="",
        description="Ed25519 public keys (hex, comma separated) whose verdicts are trusted; empty: the key "
        "of the verifier sharing this data dir.",
    )
    rate_limit_tune_per_min: int = Field(
        default=30, ge=0, le=100000,
        description="Tune calls one client (certificate, or address without TLS) may start a minute; 0: no limit.",
    )
    rate_limit_verify_per_min: int = Field(
        default=120, ge=0, le=100000,
        description="Verify calls one client may make a minute (a whole minute's worth may come at once); 0: no limit.",
    )
    stream_timeout_s: float = Field(
        default=1800.0, gt=0, le=24 * 3600,
        description="Deadline for outgoing streaming calls (Verify, Deploy, Tune) that set none.",
    )
    verdict_ttl_s: float = Field(
        default=7 * 24 * 3600.0, ge=60, le=90 * 24 * 3600,
        description="How long an approving verdict stays valid (rejections: one hour).",
    )

    metrics_addr: str = Field(
        default="",
        description="Serve Prometheus metrics at http://ADDR/metrics (host:port; port 0 picks one); empty: off. "
        "`schedcp up` gives each service one.",
    )
    jaeger_url: str = Field(
        default="",
        description="Jaeger's query endpoint (http://HOST:16686) for `schedcp trace`; empty: the local stack's "
        "trace store.",
    )
    tls_dir: str = Field(
        default="",
        description="Mutual TLS for gRPC: a directory with ca.pem and <identity>.pem/<identity>-key.pem "
        "(`schedcp certs init` makes one); empty: no TLS, loopback only.",
    )
    tls_cert: str = Field(default="", description="This process's certificate (PEM), instead of SCHEDCP_TLS_DIR.")
    tls_key: str = Field(default="", description="Its private key (PEM), with SCHEDCP_TLS_CERT.")
    tls_ca: str = Field(default="", description="The CA that signs every schedcp certificate, with SCHEDCP_TLS_CERT.")

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        explicit = {"SCHEDCP_TLS_CERT": self.tls_cert, "SCHEDCP_TLS_KEY": self.tls_key, "SCHEDCP_TLS_CA": self.tls_ca}
        missing = [name for name, value in explicit.items() if not value]
        if len(missing) not in (0, len(explicit)):
            raise ValueError(f"set SCHEDCP_TLS_CERT, SCHEDCP_TLS_KEY and SCHEDCP_TLS_CA together ({', '.join(missing)} "
                             "missing), or use SCHEDCP_TLS_DIR")
        return self

    @model_validator(mode="after")
    def _nats_password_with_user(self) -> Settings:
        if bool(self.nats_user) != bool(self.nats_password_file):
            raise ValueError("set SCHEDCP_NATS_USER and SCHEDCP_NATS_PASSWORD_FILE together")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_dir or self.tls_cert)

    def addr(self, role: Role) -> str:
        """The gRPC address of a service."""
        return getattr(self, f"{role.value}_addr")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by SCHEDCP_CONFIG_FILE, if that variable is set."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ below does all the work

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_FILE_VAR)
        if not path:
            return {}
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(
                f"{CONFIG_FILE_VAR}={path}: cannot read it ({exc.strerror}); fix the path or unset it"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{CONFIG_FILE_VAR}={path}: not valid TOML ({exc}); fix the file") from exc
        known = set(Settings.model_fields)
        for key in data:
            if key not in known:
                hint = _suggest(key, known)
                raise ConfigError(f"{path}: unknown setting '{key}'{hint}; remove or rename it")
        return data


def env_var(field_name: str) -> str:
    """The environment variable that sets a field."""
    return ENV_PREFIX + field_name.upper()


def addr_env_var(role: Role) -> str:
    """The variable that sets a service's gRPC address."""
    return env_var(f"{role.value}_addr")


def known_env_vars() -> list[str]:
    """Every SCHEDCP_* variable schedcp reads."""
    return sorted([env_var(name) for name in Settings.model_fields] + [CONFIG_FILE_VAR])


def _suggest(name: str, candidates: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_unknown_env() -> None:
    known = known_env_vars()
    for name in sorted(os.environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            raise ConfigError(
                f"{name} is not a schedcp setting{_suggest(name, known)}; "
                "unset it (docs/configuration.md lists them all)"
            )


def _describe(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings: its message names them
        return message
    field = str(error["loc"][0])
    value = error.get("input")
    return f"{env_var(field)}={value!r} is invalid: {message}; fix it or unset it for the default"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, raising ConfigError with a message a person can act on."""
    _check_unknown_env()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from exc
