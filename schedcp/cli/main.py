"""`schedcp`: the command line front door, a gRPC client of the services.

Every command reads the same settings as the services (SCHEDCP_* variables, the optional
SCHEDCP_CONFIG_FILE), so it finds the stack the services were started with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import grpc
from google.protobuf import json_format
from rich.table import Table

from schedcp import __version__
from schedcp.cli import cycle as cli_cycle
from schedcp.cli import llm as cli_llm
from schedcp.cli import rollout as cli_rollout
from schedcp.cli.console import err, out, print_message
from schedcp.cli.console import table as table_of
from schedcp.cli.probe import ServiceStatus, probe_all
from schedcp.cli.stack import LocalStack
from schedcp.domain import hostclass, params, policies
from schedcp.runtime import nats_auth, rpc, tls
from schedcp.runtime.config import ConfigError, Settings, load_settings
from schedcp.runtime.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    DependencyUnavailable,
    InvalidArgument,
    NotFound,
    StartupError,
)
from schedcp.v1 import (
    deployment_pb2,
    observer_pb2,
    observer_pb2_grpc,
    planner_pb2,
    planner_pb2_grpc,
    policy_pb2,
    profile_pb2,
    verdict_pb2,
    verifier_pb2,
    verifier_pb2_grpc,
)


def _status_table(statuses: list[ServiceStatus]) -> Table:
    table = table_of("schedcp services", ("service", "address", "health", "version", "pid", "details"))
    for s in statuses:
        colour = "green" if s.serving else "red"
        details = ", ".join(f"{k}={v}" for k, v in sorted(s.info.details.items())) if s.info else s.error
        table.add_row(s.role, s.addr, f"[{colour}]{s.health}[/]", s.info.version if s.info else "",
                      str(s.info.pid) if s.info else "", details)
    return table


def _print_statuses(statuses: list[ServiceStatus], as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        out.print(_status_table(statuses))


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    statuses = asyncio.run(probe_all(settings, timeout_s=args.timeout))
    _print_statuses(statuses, args.json)
    down = [s.role for s in statuses if not s.serving]
    if down and not args.json:
        err.print(f"not serving: {', '.join(down)} (is the stack up? `schedcp up --detach` starts it)")
    return 0 if not down else EXIT_FAILED


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    stack = LocalStack(settings)

    def progress(message: str) -> None:
        if not args.json:
            err.print(f"[dim]starting[/] {message}")

    statuses = asyncio.run(stack.start(progress))
    _print_statuses(statuses, args.json)
    if args.detach:
        if not args.json:
            err.print(f"stack running in the background; logs in {stack.log_dir}; stop it with `schedcp down`")
        return 0
    err.print("stack running; press Ctrl-C to stop it")
    try:
        _wait_for_signal()
    finally:
        stopped = stack.stop()
        err.print(f"stopped {', '.join(stopped)}")
    return 0


def _wait_for_signal() -> None:
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: received.append(number))
    while not received:
        signal.pause()


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = LocalStack(settings).stop()
    if args.json:
        print(json.dumps({"stopped": stopped}))
    else:
        out.print(f"stopped {', '.join(stopped)}" if stopped else "no local stack was running")
    return 0


def cmd_hosts(settings: Settings, args: argparse.Namespace) -> int:
    request = planner_pb2.ListHostsRequest()
    response = cli_cycle.ask(settings.planner_addr, settings.rpc_timeout_s,
                             lambda channel: planner_pb2_grpc.PlannerServiceStub(channel).ListHosts(request))
    if args.json:
        print_message(response)
        return 0
    table = table_of("registered hosts",
                     ("host", "kernel", "cpus", "sched_ext", "class", "workload", "observer", "executor"))
    for h in response.hosts:
        f = h.facts
        scx = "unsupported" if "sched_ext" not in f.backends else (f.sched_ext.ops_name or "no scheduler")
        table.add_row(h.host_id, f.kernel_release, str(f.cpu.logical_cpus), scx, hostclass.of(f),
                      h.workload_cluster or "-", h.observer_addr, h.executor_addr)
    out.print(table)
    return 0


def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    request = planner_pb2.ListAuditRequest(host_id=args.host or "", limit=args.limit)
    response = cli_cycle.ask(settings.planner_addr, settings.rpc_timeout_s,
                             lambda channel: planner_pb2_grpc.PlannerServiceStub(channel).ListAudit(request))
    if args.json:
        print_message(response)
        return 0
    table = table_of("audit trail (oldest first)",
                     ("when (UTC)", "host", "action", "policy", "by", "digest", "verdict", "why"))
    for r in response.records:
        action = deployment_pb2.AuditAction.Name(r.action).removeprefix("AUDIT_ACTION_").lower()
        where = r.host_id or f"rollout {r.rollout_id}"
        table.add_row(r.at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), where, action, r.policy_name, r.actor,
                      r.artifact_digest[:12], r.verdict_id[:12], r.reason)
    out.print(table if response.records else "no audit records yet: nothing was deployed")
    return 0


async def _observer_addr(settings: Settings, host: str | None) -> str:
    """The local observer, or the one `host` registered (asked of the planner)."""
    if not host:
        return settings.observer_addr
    return (await cli_cycle.registered_host(settings, host)).observer_addr


_DETAIL = {"summary": profile_pb2.DETAIL_LEVEL_SUMMARY, "detailed": profile_pb2.DETAIL_LEVEL_DETAILED,
           "full": profile_pb2.DETAIL_LEVEL_FULL}
_GROUPING = {"comm": profile_pb2.GROUPING_KIND_COMM, "process": profile_pb2.GROUPING_KIND_PROCESS,
             "cgroup": profile_pb2.GROUPING_KIND_CGROUP}
_CLASS = {profile_pb2.WORKLOAD_CLASS_LATENCY_SENSITIVE: "latency", profile_pb2.WORKLOAD_CLASS_BATCH: "batch",
          profile_pb2.WORKLOAD_CLASS_INTERACTIVE: "interactive", profile_pb2.WORKLOAD_CLASS_BACKGROUND: "background"}


def cmd_profile(settings: Settings, args: argparse.Namespace) -> int:
    request = observer_pb2.GetProfileRequest(detail=_DETAIL[args.detail], grouping=_GROUPING[args.grouping],
                                             max_groups=args.max_groups)
    request.window.FromMilliseconds(int(args.window * 1000))

    async def fetch() -> profile_pb2.WorkloadProfile:
        addr = await _observer_addr(settings, args.host)
        async with rpc.channel(addr, settings.rpc_timeout_s + args.window) as channel:
            return await observer_pb2_grpc.ObserverServiceStub(channel).GetProfile(request)

    if not args.json:
        err.print(f"sampling {args.host or 'this host'} for {args.window:g} s ...", highlight=False)
    profile = asyncio.run(fetch())
    if args.json:
        print_message(profile)
        return 0
    table = Table(title=f"{profile.host.host_id}: workload over {args.window:g} s ({profile.sampler})",
                  title_justify="left")
    for column in ("group", "class", "conf", "cpu %", "demand", "wakeups/s", "burst us", "wait p50 us",
                   "wait p99 us"):
        table.add_column(column, justify="left" if column in ("group", "class") else "right")
    for g in profile.groups:
        f = g.features
        table.add_row(g.name, _CLASS.get(g.classification.workload_class, "?"),
                      f"{g.classification.confidence:.2f}", f"{100 * f.cpu_share:.1f}", f"{f.demand:.2f}",
                      f"{f.wakeups_per_s:.0f}", f"{f.mean_burst_us:.0f}", f"{f.runq_latency.p50_us:.0f}",
                      f"{f.runq_latency.p99_us:.0f}")
    out.print(table)
    out.print(profile.texts[-1].text, markup=False, highlight=False)
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    path, origin, goals = _verify_source(args.file)
    artifact = _artifact_from_file(path, origin, args.name, args.param, args.goal or goals)
    request = verifier_pb2.VerifyRequest(artifact=artifact, no_cache=args.no_cache)

    async def run() -> verdict_pb2.Verdict:
        async with rpc.channel(settings.verifier_addr, settings.rpc_timeout_s) as channel:
            async for progress in verifier_pb2_grpc.VerifierServiceStub(channel).Verify(request):
                if progress.HasField("verdict"):
                    return progress.verdict
                if not args.json:
                    err.print(f"  {progress.message}", markup=False, highlight=False)
        raise DependencyUnavailable("the verifier ended the stream without a verdict")

    verdict = asyncio.run(run())
    if args.json:
        print_message(verdict)
    else:
        out.print(("cached " if verdict.cached else "") + verdict.summary, markup=False, highlight=False)
        for stage in verdict.stages:
            for f in stage.findings:
                where = f"line {f.line}: " if f.line else ""
                out.print(f"  {f.rule_id} {where}{f.message}" + (f"\n    hint: {f.hint}" if f.hint else ""),
                          markup=False, highlight=False)
        out.print(f"verdict {verdict.claims.verdict_id}, artifact {verdict.claims.artifact_digest[:16]}..., "
                  f"kernel {verdict.claims.kernel.release}", markup=False, highlight=False)
    return 0 if verdict.claims.approved else EXIT_FAILED


def _verify_source(argument: str) -> tuple[Path, int, list[str]]:
    """A file (the operator's own policy), or a sched_ext policy of the installed library by
    name (no checkout needed); with the artifact's origin and the goals the library claims for it."""
    path = Path(argument)
    if path.exists() or "/" in argument or "." in argument:
        return path, policy_pb2.POLICY_ORIGIN_OPERATOR, []
    library = {meta.name: meta for meta in policies.library() if meta.kind == "sched_ext"}
    if argument not in library:
        raise InvalidArgument(f"{argument!r} is neither a file nor a sched_ext policy of the library "
                              f"({', '.join(sorted(library))})")
    meta = library[argument]
    return policies.source_of(meta), policy_pb2.POLICY_ORIGIN_LIBRARY, list(meta.goals)


def _artifact_from_file(path: Path, origin: int, name: str, items: list[str],
                        goals: list[str] = ()) -> policy_pb2.PolicyArtifact:
    """A .bpf.c file as a sched_ext artifact with --param values and the goals it claims, or a
    NativePolicy in JSON."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    artifact = policy_pb2.PolicyArtifact(name=name, origin=origin)
    if path.suffix == ".json":
        try:
            json_format.Parse(text, artifact.native)
        except json_format.ParseError as exc:
            raise InvalidArgument(f"{path} is not a NativePolicy in JSON: {exc}") from None
        return artifact
    artifact.sched_ext.source = text
    artifact.sched_ext.goals.extend(goals)
    for item in items:
        name, value = params.parse(item)
        artifact.parameters[name].CopyFrom(value)
    return artifact


def cmd_certs(settings: Settings, args: argparse.Namespace) -> int:
    directory = Path(args.dir or settings.tls_dir or settings.data_dir / "tls")
    written = tls.create_dev_certs(directory, args.host)
    if args.json:
        print(json.dumps({"dir": str(directory), "files": [str(p) for p in written]}))
        return 0
    out.print(f"A development CA and certificates for {', '.join(tls.IDENTITIES)} in {directory} "
              f"(keys readable by you only). Use them with:\n  export SCHEDCP_TLS_DIR={directory}\n"
              "Every service then requires mutual TLS, and the CLI presents the operator certificate.",
              markup=False, highlight=False)
    return 0


def cmd_nats_auth(settings: Settings, args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    config = nats_auth.write_server_config(directory)
    if args.json:
        print(json.dumps({"dir": str(directory), "config": str(config)}))
        return 0
    out.print(f"NATS users for {', '.join(nats_auth.IDENTITIES)} with fresh passwords and their publish "
              f"permissions in {config}; the passwords in {directory}/<identity>.password (readable by you "
              f"only). Start the server with `nats-server -js -c {config}` and give each process its role's "
              "password: SCHEDCP_NATS_USER=planner SCHEDCP_NATS_PASSWORD_FILE=.../planner.password.",
              markup=False, highlight=False)
    return 0


def cmd_version(settings: Settings, args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schedcp",
        description="schedcp: an agentic control plane for Linux CPU scheduling. LLM agents think "
        "about scheduling; the kernel only executes policies that passed verification.",
        epilog="Settings come from SCHEDCP_* variables (docs/configuration.md). "
        "Quick start: `schedcp up --detach`, then `schedcp status`, then `schedcp down`.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[Settings, argparse.Namespace], int], text: str):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print machine-readable JSON")
        command.set_defaults(handler=handler)
        return command

    up = add("up", cmd_up, "Start a local stack: nats-server with JetStream and the five services. "
             "Waits until all are healthy, then runs until Ctrl-C (or returns at once with --detach).")
    up.add_argument("-d", "--detach", action="store_true", help="leave the stack running in the background")
    add("down", cmd_down, "Stop a local stack started with `schedcp up --detach`.")
    status = add("status", cmd_status, "Show each service's health, version and details. "
                 "Exits 1 when any service is not serving.")
    status.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each service")
    add("hosts", cmd_hosts, "List the hosts whose observers registered with the fleet.")
    profile = add("profile", cmd_profile, "Sample a host's workload and show its groups, their class "
                  "(latency-sensitive, batch, interactive, background) and run-queue waits.")
    profile.add_argument("host", nargs="?", help="a registered host id (default: this host's observer)")
    profile.add_argument("-w", "--window", type=float, default=2.0, help="seconds to sample (default 2)")
    profile.add_argument("--detail", choices=list(_DETAIL), default="summary",
                         help="how much text to print after the table (default summary)")
    profile.add_argument("--grouping", choices=list(_GROUPING), default="comm",
                         help="group threads by process name (default), process id, or cgroup")
    profile.add_argument("--max-groups", type=int, default=0, help="show at most this many groups (default 20)")
    verify = add("verify", cmd_verify, "Run the verifier's stages on your own scheduler (a sched_ext .bpf.c "
                  "file) or native policy (a NativePolicy .json file) and print the verdict. Exits 0 when "
                  "approved, 1 when rejected.")
    verify.add_argument("file", help="FILE.bpf.c (sched_ext), FILE.json (native policy) or the name of a "
                        "sched_ext policy of the library (e.g. fifo)")
    verify.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter (a `const volatile` global) to verify with; repeatable")
    verify.add_argument("--goal", action="append", default=[], choices=list(get_args(policies.GoalWord)),
                        help="what the scheduler is for; repeatable. With latency, the verifier holds its wakeup "
                             "latency close to EEVDF's (for the task it favours by name, if a --param names one). "
                             "Default: a library policy's own goals, none for a file")
    verify.add_argument("--name", default="", help="policy name recorded in the verdict (default: none)")
    verify.add_argument("--no-cache", action="store_true", help="run the stages even if a verdict is cached")
    certs = add("certs", cmd_certs, "Make TLS certificates: `schedcp certs init` creates a development CA and a "
                "certificate for every service and for the CLI (operator), for SCHEDCP_TLS_DIR.")
    certs.add_argument("action", choices=["init"], help="init: create the CA and the certificates")
    certs.add_argument("--dir", default="", help="where (default: SCHEDCP_TLS_DIR, else <data dir>/tls)")
    certs.add_argument("--host", action="append", default=[], metavar="NAME",
                       help="another DNS name or IP the services are reached by (besides localhost); repeatable")
    auth = add("nats-auth", cmd_nats_auth, "Make NATS users: `schedcp nats-auth init` writes a password for every "
               "role and a nats-server configuration with each role's publish permissions (what `schedcp up` "
               "runs with), for a NATS server of your own. Existing passwords are replaced.")
    auth.add_argument("action", choices=["init"], help="init: write the passwords and the server configuration")
    auth.add_argument("--dir", default="nats-auth",
                      help="where (default: ./nats-auth; not the local stack's own, which `schedcp up` manages)")
    history = add("history", cmd_history, "Show the audit trail: every deploy, keep, rollback, refusal and "
                  "ejection on every host (or one), who caused it, the artifact digest and verdict, and why.")
    history.add_argument("host", nargs="?", help="only this host's records")
    history.add_argument("-n", "--limit", type=int, default=50, help="the newest this many (default 50, at most 1000)")
    cli_cycle.register(add)
    cli_rollout.register(add)
    cli_llm.register(add)
    add("version", cmd_version, "Print the schedcp version.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        rpc.configure_clients(tls.files_for(settings, tls.OPERATOR), settings.stream_timeout_s)
        return args.handler(settings, args)
    except ConfigError as exc:
        err.print(f"schedcp: configuration error: {exc}", markup=False, highlight=False)
        return EXIT_CONFIG
    except InvalidArgument as exc:
        err.print(f"schedcp: {exc}", markup=False, highlight=False)
        return EXIT_CONFIG
    except NotFound as exc:
        err.print(f"schedcp: {exc}", markup=False, highlight=False)
        return EXIT_FAILED
    except (StartupError, DependencyUnavailable) as exc:
        err.print(f"schedcp: {exc}", markup=False, highlight=False)
        return EXIT_UNAVAILABLE
    except grpc.aio.AioRpcError as exc:
        err.print(f"schedcp: {args.command} failed: {exc.details()} ({exc.code().name})",
                  markup=False, highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
