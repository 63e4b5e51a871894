"""`schedcp rollout start|status|approve|pause|resume|abort`: a proven policy taken to the hosts of
a class in waves (the planner's RolloutService); `approve` starts a rollout the planner proposed."""

from __future__ import annotations

import argparse
import asyncio
import time

from schedcp.cli.console import err, out, print_message, say
from schedcp.cli.console import table as table_of
from schedcp.domain import params
from schedcp.runtime import rpc
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import EXIT_FAILED
from schedcp.v1 import rollout_pb2, rollout_pb2_grpc

R = rollout_pb2
ENDED = (R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_HALTED, R.ROLLOUT_STATE_ABORTED)
POLL_S = 1.0


def _call(settings: Settings, method: str, request):
    async def run():
        async with rpc.channel(settings.planner_addr, settings.rpc_timeout_s) as channel:
            return await getattr(rollout_pb2_grpc.RolloutServiceStub(channel), method)(request)

    return asyncio.run(run())


def _word(enum, value: int) -> str:
    return enum.Name(value).split("_", 2)[-1].lower().replace("_", " ")


def _fraction(text: str) -> float:
    """`20%` or `0.2`."""
    try:
        value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share of a wave's hosts: 0% up to (not including) 100%")
    return value


def cmd_rollout(settings: Settings, args: argparse.Namespace) -> int:
    return {"start": _start, "status": _status, "approve": _control, "pause": _control, "resume": _control,
            "abort": _control}[args.action](settings, args)


def _start(settings: Settings, args: argparse.Namespace) -> int:
    request = R.StartRolloutRequest(policy=args.policy, selector=args.hosts, intent=args.intent,
                                    waves=[w for w in args.waves.split(",") if w],
                                    max_rollback_fraction=args.max_rollbacks)
    for item in args.param:
        name, value = params.parse(item)
        request.parameters[name].CopyFrom(value)
    rollout = _call(settings, "StartRollout", request)
    if args.json and not args.wait:
        print_message(rollout)
        return 0
    if not args.json:
        say(f"rollout {rollout.rollout_id}: {rollout.policy} to {sum(len(t.host_ids) for t in rollout.tracks)} hosts "
            f"in {len(rollout.tracks)} classes, waves {', '.join(rollout.waves)} ({rollout.reason})")
    if not args.wait:
        say(f"`schedcp rollout status {rollout.rollout_id}` follows it", err)
        return 0
    return _follow(settings, rollout.rollout_id, args.json)


def _follow(settings: Settings, rollout_id: str, as_json: bool) -> int:
    told: set[tuple[str, int, bool]] = set()
    while True:
        rollout = _call(settings, "GetRollout", R.GetRolloutRequest(rollout_id=rollout_id))
        for track in rollout.tracks:
            for wave in track.waves:
                if (key := (track.host_class + track.workload_cluster, wave.number, wave.done)) not in told:
                    told.add(key)
                    if not as_json:
                        _say_wave(track, wave)
        if rollout.state in ENDED:
            break
        time.sleep(POLL_S)
    if as_json:
        print_message(rollout)
    else:
        say(f"rollout {rollout.rollout_id} {_word(R.RolloutState, rollout.state)}: {rollout.reason}")
    return 0 if rollout.state == R.ROLLOUT_STATE_COMPLETED else EXIT_FAILED


def _say_wave(track: R.RolloutTrack, wave: R.RolloutWave) -> None:
    where = f"{track.host_class} / {track.workload_cluster or '-'}: wave {wave.number}"
    if wave.done:
        say(f"{where} judged: {wave.judgement}")
    else:
        say(f"{where} started on {wave.hosts} hosts (reaching {wave.reach} of {len(track.host_ids)})")


def _status(settings: Settings, args: argparse.Namespace) -> int:
    if not args.id:
        response = _call(settings, "ListRollouts", R.ListRolloutsRequest())
        if args.json:
            print_message(response)
            return 0
        table = table_of("rollouts (newest first)", ("rollout", "policy", "state", "started (UTC)", "classes",
                                                      "hosts", "why"))
        for r in response.rollouts:
            table.add_row(r.rollout_id, r.policy, _word(R.RolloutState, r.state),
                          r.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), str(len(r.tracks)),
                          str(sum(len(t.host_ids) for t in r.tracks)), r.reason)
        out.print(table if response.rollouts
                  else "no rollouts yet: `schedcp rollout start POLICY --hosts all` starts one")
        return 0
    rollout = _call(settings, "GetRollout", R.GetRolloutRequest(rollout_id=args.id, with_hosts=args.show_hosts))
    if args.json:
        print_message(rollout)
        return 0
    policy = " ".join([rollout.policy, *(f"{k}={params.text(v)}" for k, v in sorted(rollout.parameters.items()))])
    say(f"rollout {rollout.rollout_id}: {policy} to {rollout.selector!r}, "
        f"waves {', '.join(rollout.waves)}, halting a wave above {rollout.max_rollback_fraction:.0%} not kept; "
        f"{'proposed' if rollout.state == R.ROLLOUT_STATE_PROPOSED else 'started'} by {rollout.actor}\n"
        f"{_word(R.RolloutState, rollout.state)}: {rollout.reason}")
    table = table_of("classes", ("host class", "workload", "hosts", "wave", "reached", "kept", "rolled back",
                                 "failed", "skipped", "class effect", "state", "why"))
    for t in rollout.tracks:
        done = [w for w in t.waves if w.done]
        counts = [str(sum(getattr(w, k) for w in done)) for k in ("kept", "rolled_back", "failed", "skipped")]
        wave = f"{len(t.waves)} ({'done' if t.waves[-1].done else 'running'})" if t.waves else "-"
        table.add_row(t.host_class, t.workload_cluster or "-", str(len(t.host_ids)), wave,
                      str(t.waves[-1].reach if t.waves else 0), *counts,
                      f"{t.class_mean_improvement:+.0%} ({t.class_outcomes})" if t.class_outcomes else "-",
                      _word(R.RolloutState, t.state), t.reason)
    out.print(table)
    if args.show_hosts:
        hosts = table_of("hosts", ("host", "result", "reverted", "deployment", "what happened"))
        for h in rollout.hosts:
            hosts.add_row(h.host_id, _word(R.RolloutHostResult, h.result), "yes" if h.reverted else "",
                          h.deployment_id, h.message)
        out.print(hosts)
    return 0


def _control(settings: Settings, args: argparse.Namespace) -> int:
    method, request = {
        "approve": ("ApproveRollout", R.ApproveRolloutRequest(rollout_id=args.id)),
        "pause": ("PauseRollout", R.PauseRolloutRequest(rollout_id=args.id)),
        "resume": ("ResumeRollout", R.ResumeRolloutRequest(rollout_id=args.id)),
        "abort": ("AbortRollout", R.AbortRolloutRequest(rollout_id=args.id, reason=getattr(args, "reason", ""))),
    }[args.action]
    rollout = _call(settings, method, request)
    if args.json:
        print_message(rollout)
    else:
        say(f"rollout {rollout.rollout_id} {_word(R.RolloutState, rollout.state)}: {rollout.reason}")
    return 0


def register(add) -> None:
    """Add `schedcp rollout` and its actions to the CLI's parser."""
    rollout = add("rollout", cmd_rollout, "Take a proven policy to many hosts in waves, class by class (host class "
                  "and workload cluster, as `schedcp hosts` shows them): each wave's hosts canary it; a wave where "
                  "too many did not keep it, or where the class's measured effect turned negative, halts that "
                  "class and rolls the wave back.")
    actions = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text)
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print machine-readable JSON")
        return parser

    start = action("start", "Start a rollout of a policy proven in at least one class.")
    start.add_argument("policy", help="a library policy (see `schedcp policies`)")
    start.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter of the policy; repeatable")
    start.add_argument("--hosts", required=True, metavar="SELECTOR",
                       help="'all', or KEY=PATTERN terms joined by commas, KEY one of host, class, workload, kernel, "
                       "arch, cpus, sched_ext (e.g. 'sched_ext=yes,cpus=8')")
    start.add_argument("--waves", default="1,5%,25%,100%",
                       help="each wave's reach in every class, cumulative: host counts, then shares, the last 100%% "
                       "(default 1,5%%,25%%,100%%)")
    start.add_argument("--max-rollbacks", type=_fraction, default=0.0, metavar="SHARE",
                       help="a wave regresses when more than this share of its hosts did not keep the policy "
                       "(default SCHEDCP_ROLLOUT_MAX_ROLLBACK_FRACTION, 20%%)")
    start.add_argument("--intent", default="", help="what the policy is for, in words (names the groups)")
    start.add_argument("--wait", action="store_true", help="follow it until it ends; exit 0 when it completed")
    status = action("status", "Show a rollout's classes and waves, or list every rollout.")
    status.add_argument("id", nargs="?", help="a rollout id (default: list them)")
    status.add_argument("--hosts", dest="show_hosts", action="store_true", help="every host's result too")
    for name, text in (("approve", "Start a rollout the planner proposed (state 'proposed': a policy became proven "
                                   "in a class with more hosts), over the class's hosts as registered now."),
                       ("pause", "Start no further host (canaries in flight finish) until resumed."),
                       ("resume", "Go on with a paused rollout."),
                       ("abort", "End a rollout: no further host; hosts that kept the policy keep it. A proposal "
                                 "is declined (and not proposed again).")):
        parser = action(name, text)
        parser.add_argument("id", help="the rollout id")
        if name == "abort":
            parser.add_argument("--reason", default="", help="recorded in the audit trail")
