"""Progressive rollout: a policy proven in some class taken to the selected hosts in waves.

The selected hosts are split by class (host class and workload cluster, rollout_plan.py) and
each class goes through the waves on its own: a wave's hosts each run a decision cycle for the
policy (the executor's canary judges it on that host, fleet.py), then the wave is judged. It
regresses when more than the allowed fraction of its judged hosts did not keep the policy, or
when the learner's effect of the policy in that class turned negative; the class then halts and
that wave's hosts that kept it are rolled back, with the reason recorded. Other classes go on.

State lives in the `schedcp_rollouts` KV bucket: the rollout under its id (saved at every step)
and each host's cycle under `<rollout>.<host>` as soon as it starts, then its result, so a
planner that restarts resumes every running rollout where it stood: a host with a result is
not started again, one whose cycle was in flight gets its result from the outcome its canary
published (the executor judges it without the planner), and only a host whose cycle never
reached a judged canary is started again. Every step (start, each wave's start and judgement,
halt, pause, resume, abort, end) is an audit record on `schedcp.audit._rollout.<rollout>` and
runs in a trace of its own; a wave's trace holds its hosts' cycles. A rollout runs on the
replica holding its lease; pause, resume and abort asked of another replica go to that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator

import grpc
import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from opentelemetry import context as otel_context

from schedcp.domain import hostclass, params
from schedcp.runtime import tasks, telemetry, topology
from schedcp.runtime.bus import Bus
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import DependencyUnavailable, FailedPrecondition, InvalidArgument, NotFound
from schedcp.v1 import common_pb2, cycle_pb2, deployment_pb2, policy_pb2, rollout_pb2
from services.planner import rollout_plan
from services.planner.fleet import Fleet, class_effect, proven_classes
from services.planner.hosts import HostDirectory
from services.planner.leases import ROLLOUT_PREFIX, LeaseTable, replica_name

log = logging.getLogger(__name__)
R = rollout_pb2
A = deployment_pb2
AUDIT_HOST = "_rollout"  # not a host id (those start with a letter or digit)
JUDGED = {R.ROLLOUT_HOST_RESULT_KEPT, R.ROLLOUT_HOST_RESULT_ROLLED_BACK, R.ROLLOUT_HOST_RESULT_FAILED}
ENDED = {R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_HALTED, R.ROLLOUT_STATE_ABORTED}
# Not run by any replica: ended, or proposed and waiting for an operator.
NOT_RUN = ENDED | {R.ROLLOUT_STATE_PROPOSED}
RETRY_S = 5.0
# Pause, resume and abort asked on a replica that does not run the rollout are sent on
# `<CONTROL_SUBJECT>.<rollout>`, where only the replica running it listens; it answers with the
# rollout, or the error in CONTROL_ERROR_HEADER.
CONTROL_SUBJECT = f"{topology.PREFIX}.rollout_control"
CONTROL_ERROR_HEADER = "Schedcp-Error"
CONTROL_TIMEOUT_S = 3.0
PAST = {"pause": "paused", "resume": "resumed", "abort": "aborted"}
PROPOSAL_RECHECK_S = 60.0


class RolloutStore:
    """Rollouts and per-host results in JetStream KV; saves of one rollout never overtake each other."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._locks: dict[str, asyncio.Lock] = {}

    async def save(self, rollout: R.Rollout) -> None:
        async with self._locks.setdefault(rollout.rollout_id, asyncio.Lock()):
            rollout.updated_at.GetCurrentTime()
            saved = R.Rollout()
            saved.CopyFrom(rollout)
            saved.ClearField("hosts")
            await (await self._kv()).put(rollout.rollout_id, saved.SerializeToString())

    async def create(self, rollout: R.Rollout) -> bool:
        """Store a new rollout under its id; False when one is stored there already."""
        rollout.updated_at.GetCurrentTime()
        try:
            await (await self._kv()).create(rollout.rollout_id, rollout.SerializeToString())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def load_revision(self, rollout_id: str) -> tuple[R.Rollout, int]:
        """The stored rollout and its revision (for `replace`); NotFound as `load`."""
        if topology.is_kv_key(rollout_id) and "." not in rollout_id:
            with contextlib.suppress(KeyNotFoundError):
                entry = await (await self._kv()).get(rollout_id)
                return R.Rollout.FromString(entry.value), entry.revision
        raise NotFound(f"no rollout {rollout_id!r}; `schedcp rollout status` lists them")

    async def replace(self, rollout: R.Rollout, revision: int) -> bool:
        """Store the rollout if nobody stored it since `revision`; False when somebody did."""
        rollout.updated_at.GetCurrentTime()
        try:
            await (await self._kv()).update(rollout.rollout_id, rollout.SerializeToString(), last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def load(self, rollout_id: str) -> R.Rollout:
        return (await self.load_revision(rollout_id))[0]

    async def find(self, rollout_id: str) -> R.Rollout | None:
        try:
            return await self.load(rollout_id)
        except NotFound:
            return None

    async def all(self) -> list[R.Rollout]:
        # Rollout ids are one token, host results two: watch the rollouts alone (a listing of the
        # bucket's keys would read every host of every past rollout).
        watcher = await (await self._kv()).watch("*", ignore_deletes=True, meta_only=True)
        keys = []
        try:
            async for entry in watcher:
                if entry is None:  # the end of what is stored
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()
        return [await self.load(key) for key in keys]

    async def put_host(self, rollout_id: str, host: R.RolloutHost) -> None:
        await (await self._kv()).put(f"{rollout_id}.{host.host_id}", host.SerializeToString())

    async def host(self, rollout_id: str, host_id: str) -> R.RolloutHost | None:
        try:
            return R.RolloutHost.FromString((await (await self._kv()).get(f"{rollout_id}.{host_id}")).value)
        except KeyNotFoundError:
            return None

    async def _kv(self):
        return await self._bus.kv(topology.ROLLOUTS_BUCKET)


class Rollouts:
    """Starts, runs, pauses, resumes and aborts rollouts; resumes the running ones at start."""

    def __init__(self, bus: Bus, hosts: HostDirectory, fleet: Fleet, settings: Settings, replica: str = "") -> None:
        """`replica`: this planner among its replicas (leases.replica_name); each rollout runs on the
        one holding its lease."""
        self._bus = bus
        self._leases = LeaseTable(bus, ROLLOUT_PREFIX, settings.planner_lease_s, replica or replica_name())
        self._keeper: asyncio.Task | None = None
        self._hosts = hosts
        self._fleet = fleet
        self._store = RolloutStore(bus)
        self._default_fraction = settings.rollout_max_rollback_fraction
        self._proposals = settings.rollout_proposals
        # When the learner may next be asked whether a kept policy became proven in a class.
        self._recheck_at: dict[tuple[str, str, str, str], float] = {}
        self._slots = asyncio.Semaphore(settings.rollout_concurrency)
        self._live: dict[str, R.Rollout] = {}
        # Set while a rollout may start hosts; cleared while it is paused.
        self._gates: dict[str, asyncio.Event] = {}
        self._runners: dict[str, asyncio.Task] = {}

    # --- the RPCs ------------------------------------------------------------------------------
    async def start(self, request: R.StartRolloutRequest, actor: str) -> R.Rollout:
        rollout = await self._plan(request, actor)
        # Its lease first: a replica that sees it running without one would take it over.
        await self._hold_new(rollout.rollout_id)
        with _step("start", rollout) as trace_id:
            await self._store.save(rollout)
            await self._audit(A.AUDIT_ACTION_ROLLOUT_START, rollout, trace_id, _started(rollout))
        await self._launch(rollout)
        return rollout

    async def _hold_new(self, rollout_id: str) -> None:
        """Take the lease of a rollout about to run here; FailedPrecondition when another
        replica holds it (it is being started there)."""
        if await self._leases.claim(rollout_id, if_absent=True) is None:
            raise FailedPrecondition(f"rollout {rollout_id!r} is being started by another planner replica: "
                                     f"`schedcp rollout status {rollout_id}` shows it")

    async def approve(self, rollout_id: str, actor: str) -> R.Rollout:
        """Start a proposed rollout, planned again over its class's hosts as registered now."""
        proposal, revision = await self._store.load_revision(rollout_id)
        if proposal.state != R.ROLLOUT_STATE_PROPOSED:
            raise FailedPrecondition(f"rollout {rollout_id!r} is not a proposal waiting for approval "
                                     f"({_state(proposal)}): `schedcp rollout status {rollout_id}` shows it")
        request = R.StartRolloutRequest(policy=proposal.policy, parameters=proposal.parameters,
                                        selector=proposal.selector, waves=proposal.waves,
                                        max_rollback_fraction=proposal.max_rollback_fraction, intent=proposal.intent)
        rollout = await self._plan(request, actor, rollout_id)
        rollout.created_at.CopyFrom(proposal.created_at)
        await self._hold_new(rollout_id)
        with _step("start", rollout) as trace_id:
            # Compare-and-set: of two operators (or replicas) approving at once, one starts it.
            if not await self._store.replace(rollout, revision):
                await self._leases.release(rollout_id)
                raise FailedPrecondition(f"rollout {rollout_id!r} was approved or declined meanwhile: `schedcp rollout "
                                         f"status {rollout_id}` shows it")
            await self._audit(A.AUDIT_ACTION_ROLLOUT_START, rollout, trace_id,
                              f"approved by {actor}: {_started(rollout)}")
        await self._launch(rollout)
        return rollout

    async def after_automatic_cycle(self, events: list) -> None:
        """An automatic cycle's events: when it kept a policy, `propose` (a failure is logged; the
        cycle is done either way)."""
        kept = kept_artifact(events)
        if kept is None:
            return
        host_id, artifact = kept
        try:
            await self.propose(host_id, artifact.name, artifact.parameters)
        except Exception as exc:
            log.warning("no rollout of %s proposed after the cycle on %s: %s", artifact.name, host_id,
                        exc or type(exc).__name__)

    async def propose(self, host_id: str, policy: str, parameters) -> R.Rollout | None:
        """After an automatic cycle kept `policy` (with `parameters`) on `host_id`: when that
        policy is now proven in the host's class (host class and workload cluster), the class
        has more registered hosts and no rollout of it reached that class yet, a rollout to the
        class is recorded as PROPOSED and audited; an operator approves or declines it. Its
        tunable parameters only: group names come from each host's own goal. Once per policy,
        parameters and class (a declined one is not proposed again). SCHEDCP_ROLLOUT_PROPOSALS=
        start starts it (again at the next kept cycle if starting failed); off proposes nothing.
        Each (policy, parameters, class) is looked at most every PROPOSAL_RECHECK_S (a fleet
        keeps one policy on many hosts at once). Returns the proposal or the started rollout."""
        if self._proposals == "off":
            return None
        host = await self._hosts.get(host_id)
        host_class, cluster = hostclass.of(host.facts), host.workload_cluster
        tuned = params.tunable_values(parameters)
        key = (policy, params.key(tuned), host_class, cluster)
        if not cluster or time.monotonic() < self._recheck_at.get(key, 0):
            return None
        self._recheck_at[key] = time.monotonic() + PROPOSAL_RECHECK_S
        selector = f"class={host_class},workload={cluster}"
        request = R.StartRolloutRequest(policy=policy, parameters=tuned, selector=selector)
        proposal = (await self._store.find(_proposal_id(request))
                    or await self._new_proposal(request, host_id, host_class, cluster))
        if proposal is None:
            return None
        if proposal.state == R.ROLLOUT_STATE_PROPOSED and self._proposals == "start":
            proposal = await self.approve(proposal.rollout_id, "planner (SCHEDCP_ROLLOUT_PROPOSALS=start)")
        self._recheck_at[key] = float("inf")  # proposed (and started, if asked): nothing more to do
        return proposal

    async def _new_proposal(self, request: R.StartRolloutRequest, host_id: str, host_class: str,
                            cluster: str) -> R.Rollout | None:
        # This very parameter point (an operator's partial parameters match any point holding
        # them; a kept artifact's are all it ran with).
        point = params.key(request.parameters)
        effects = [e for e in await self._fleet.effects(request.policy) if e.parameters_key == point]
        if f"{host_class} / {cluster}" not in proven_classes(effects, request.parameters):
            return None
        terms = rollout_plan.selector(request.selector)
        if sum(rollout_plan.selects(terms, h) for h in await self._hosts.list()) < 2:
            return None
        if any(r.policy == request.policy and params.key(r.parameters) == point
               and any(t.host_class == host_class and t.workload_cluster == cluster for t in r.tracks)
               for r in await self.list()):
            return None  # an operator's rollout reached the class already
        rollout = await self._plan(request, "planner", _proposal_id(request), R.ROLLOUT_STATE_PROPOSED)
        if not await self._store.create(rollout):
            return await self._store.find(rollout.rollout_id)  # another replica proposed it meanwhile
        effect = class_effect(effects, request.parameters, host_class, cluster)
        hosts = sum(len(t.host_ids) for t in rollout.tracks)
        with _step("propose", rollout) as trace_id:
            await self._audit(A.AUDIT_ACTION_ROLLOUT_PROPOSE, rollout, trace_id,
                              f"{request.policy} {_parameters(request.parameters)} became proven in class "
                              f"{host_class} / {cluster} ({effect.outcomes} outcomes, mean {effect.mean:+.0%}) after a "
                              f"kept automatic cycle on {host_id}: proposed to the class's {hosts} hosts; `schedcp "
                              f"rollout approve {rollout.rollout_id}` starts it, `schedcp rollout abort "
                              f"{rollout.rollout_id}` declines it")
        log.info("rollout %s proposed: %s to class %s / %s (%d hosts)", rollout.rollout_id, request.policy,
                 host_class, cluster, hosts)
        return rollout

    async def get(self, rollout_id: str, with_hosts: bool = False) -> R.Rollout:
        rollout = R.Rollout()
        rollout.CopyFrom(self._live.get(rollout_id) or await self._store.load(rollout_id))
        if with_hosts:
            for track in rollout.tracks:
                for wave in track.waves:
                    for host_id in _wave_hosts(track, wave):
                        if (host := await self._store.host(rollout_id, host_id)) is not None:
                            rollout.hosts.append(host)
        return rollout

    async def list(self) -> list[R.Rollout]:
        stored = {r.rollout_id: r for r in await self._store.all()}
        stored.update(self._live)
        return sorted(stored.values(), key=lambda r: r.created_at.ToNanoseconds(), reverse=True)

    async def pause(self, rollout_id: str, actor: str) -> R.Rollout:
        return await self._control(rollout_id, "pause", actor)

    async def resume(self, rollout_id: str, actor: str) -> R.Rollout:
        return await self._control(rollout_id, "resume", actor)

    async def abort(self, rollout_id: str, actor: str, reason: str) -> R.Rollout:
        return await self._control(rollout_id, "abort", actor, reason)

    async def _control(self, rollout_id: str, verb: str, actor: str, reason: str = "") -> R.Rollout:
        """Here when this replica runs the rollout, else by the replica that does."""
        if rollout_id in self._live:
            return await self._local(rollout_id, verb, actor, reason)
        stored = await self._store.load(rollout_id)
        if stored.state == R.ROLLOUT_STATE_PROPOSED:
            return await self._decline(rollout_id, verb, actor, reason)
        if stored.state in ENDED:
            raise FailedPrecondition(f"rollout {rollout_id!r} is not running and cannot be {PAST[verb]} "
                                     f"({_state(stored)})")
        request = json.dumps({"verb": verb, "actor": actor, "reason": reason}).encode()
        try:
            reply = await self._bus.nc.request(f"{CONTROL_SUBJECT}.{rollout_id}", request, CONTROL_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            raise FailedPrecondition(f"rollout {rollout_id!r} is not running on any planner replica now and cannot "
                                     f"be {PAST[verb]} ({_state(stored)}); a replica takes it over within a lease "
                                     "(SCHEDCP_PLANNER_LEASE_S): try again then") from None
        except nats.errors.TimeoutError:
            raise DependencyUnavailable(f"the planner replica running rollout {rollout_id!r} did not answer within "
                                        f"{CONTROL_TIMEOUT_S:g} s; it may have {PAST[verb]} it: `schedcp rollout "
                                        f"status {rollout_id}` shows") from None
        if error := (reply.headers or {}).get(CONTROL_ERROR_HEADER):
            raise FailedPrecondition(error)
        rollout = R.Rollout()
        rollout.ParseFromString(reply.data)
        return rollout

    async def _decline(self, rollout_id: str, verb: str, actor: str, reason: str) -> R.Rollout:
        """Abort of a proposal: declined, never proposed again. Nothing else applies to one."""
        if verb != "abort":
            raise FailedPrecondition(f"rollout {rollout_id!r} is a proposal, not running: `schedcp rollout approve "
                                     f"{rollout_id}` starts it, `schedcp rollout abort {rollout_id}` declines it")
        proposal, revision = await self._store.load_revision(rollout_id)
        meanwhile = FailedPrecondition(f"rollout {rollout_id!r} was approved or declined meanwhile: `schedcp rollout "
                                       f"status {rollout_id}` shows it")
        if proposal.state != R.ROLLOUT_STATE_PROPOSED:
            raise meanwhile
        proposal.state = R.ROLLOUT_STATE_ABORTED
        proposal.reason = f"declined by {actor}: {reason or 'no reason given'}"
        if not await self._store.replace(proposal, revision):
            raise meanwhile
        with _step("abort", proposal) as trace_id:
            await self._audit(A.AUDIT_ACTION_ROLLOUT_ABORT, proposal, trace_id, proposal.reason, actor=actor)
        return proposal

    async def _on_control(self, msg) -> None:
        """A pause, resume or abort asked on another replica (only the one running the rollout
        listens): the rollout, or why not."""
        rollout_id = msg.subject.rsplit(".", 1)[-1]
        if not msg.reply:
            return
        try:
            asked = json.loads(msg.data)
            rollout = await self._local(rollout_id, asked["verb"], asked["actor"], asked.get("reason", ""))
        except Exception as exc:  # every answer reaches the asking replica, which tells the operator
            if not isinstance(exc, FailedPrecondition | ValueError | KeyError | TypeError):
                log.exception("rollout %s: a control asked on another replica failed", rollout_id)
            await self._bus.nc.publish(msg.reply, b"", headers={CONTROL_ERROR_HEADER: str(exc) or type(exc).__name__})
            return
        await self._bus.nc.publish(msg.reply, rollout.SerializeToString())

    async def _local(self, rollout_id: str, verb: str, actor: str, reason: str) -> R.Rollout:
        if verb not in PAST:
            raise ValueError(f"no rollout control {verb!r}")
        return await getattr(self, f"_{verb}")(rollout_id, actor, reason)

    async def _pause(self, rollout_id: str, actor: str, reason: str) -> R.Rollout:
        rollout = self._running(rollout_id, "paused")
        if rollout.state == R.ROLLOUT_STATE_RUNNING:
            rollout.state, rollout.reason = R.ROLLOUT_STATE_PAUSED, f"paused by {actor}"
            self._gates[rollout_id].clear()
            await self._step_recorded("pause", A.AUDIT_ACTION_ROLLOUT_PAUSE, rollout, actor,
                                      "paused: no further host starts; canaries in flight finish")
        return rollout

    async def _resume(self, rollout_id: str, actor: str, reason: str) -> R.Rollout:
        rollout = self._running(rollout_id, "resumed")
        if rollout.state == R.ROLLOUT_STATE_PAUSED:
            rollout.state, rollout.reason = R.ROLLOUT_STATE_RUNNING, ""
            self._gates[rollout_id].set()
            await self._step_recorded("resume", A.AUDIT_ACTION_ROLLOUT_RESUME, rollout, actor, f"resumed by {actor}")
        return rollout

    async def _abort(self, rollout_id: str, actor: str, reason: str) -> R.Rollout:
        rollout = self._running(rollout_id, "aborted")
        rollout.state = R.ROLLOUT_STATE_ABORTED
        rollout.reason = f"aborted by {actor}: {reason or 'no reason given'}; hosts that kept the policy keep it"
        for track in rollout.tracks:
            if track.state == R.ROLLOUT_STATE_RUNNING:
                track.state, track.reason = R.ROLLOUT_STATE_ABORTED, rollout.reason
        self._gates[rollout_id].set()  # hosts waiting to start see the abort and do not
        await self._step_recorded("abort", A.AUDIT_ACTION_ROLLOUT_ABORT, rollout, actor, rollout.reason)
        return rollout

    async def resume_all(self) -> None:
        """At start: every rollout a stopped planner left running or paused, and no other replica
        runs, goes on here; then, every third of a lease, this replica renews the leases of the
        rollouts it runs and takes over those whose replica stopped renewing."""
        await self.take_over()
        self._keeper = asyncio.create_task(self._leases.keep(self.take_over, "rollout"), name="rollout leases")

    async def take_over(self) -> list[str]:
        """Resume every unfinished rollout that nobody runs (no lease, or an expired one)."""
        resumed = []
        for rollout in await self._store.all():
            if rollout.state in NOT_RUN or rollout.rollout_id in self._runners:
                continue
            before = await self._leases.claim(rollout.rollout_id, if_absent=True)
            if before is None:
                continue  # another replica runs it
            why = (f"replica {before['replica']} stopped renewing its lease: replica {self._leases.replica} takes "
                   "the rollout over where it stood" if before else
                   "the planner restarted: the rollout goes on where it stood")
            log.info("rollout %s (%s): %s", rollout.rollout_id, rollout.policy, why)
            with _step("resume", rollout) as trace_id:
                await self._audit(A.AUDIT_ACTION_ROLLOUT_RESUME, rollout, trace_id, why, actor="planner")
            await self._launch(rollout)
            resumed.append(rollout.rollout_id)
        return resumed

    async def close(self) -> None:
        """At shutdown: stop the runners; their rollouts stay running in KV, their leases released
        so that another replica (or this planner started again) takes them over at once."""
        await tasks.stop([self._keeper, *self._runners.values()], "rollouts")
        for rollout_id in list(self._leases.held):
            await self._leases.release(rollout_id)

    # --- planning ------------------------------------------------------------------------------
    async def _plan(self, request: R.StartRolloutRequest, actor: str, rollout_id: str = "",
                    state: int = R.ROLLOUT_STATE_RUNNING) -> R.Rollout:
        if not request.policy:
            raise InvalidArgument("a rollout needs a policy (`schedcp policies` lists them)")
        rollout_plan.waves(list(request.waves))
        fraction = request.max_rollback_fraction or self._default_fraction
        if not 0 <= fraction < 1:
            raise InvalidArgument(f"the rollback threshold must be a fraction from 0 up to 1, got {fraction:g}")
        classes = await self._classes(request)
        proven = await self._proven(request)
        rollout = R.Rollout(rollout_id=rollout_id or f"r-{uuid.uuid4().hex[:12]}", policy=request.policy,
                            parameters=request.parameters, selector=request.selector,
                            waves=list(request.waves) or list(rollout_plan.DEFAULT_WAVES),
                            max_rollback_fraction=fraction, intent=request.intent, state=state,
                            actor=actor, reason=f"proven in {'; '.join(proven)}")
        rollout.created_at.GetCurrentTime()
        for (host_class, cluster), ids in classes.items():
            rollout.tracks.add(host_class=host_class, workload_cluster=cluster, host_ids=ids, state=state)
        return rollout

    async def _classes(self, request: R.StartRolloutRequest) -> dict[tuple[str, str], list[str]]:
        """The selected hosts by class, each class able to run the policy."""
        terms = rollout_plan.selector(request.selector)
        registered = await self._hosts.list()
        if not registered:
            raise FailedPrecondition("no host is registered: start the hosts' observers first")
        self._fleet.check_policy(request.policy, registered[0])  # the name first: a typo is the likeliest error
        chosen = {h.host_id: h for h in registered if rollout_plan.selects(terms, h)}
        if not chosen:
            raise InvalidArgument(f"the selector {request.selector!r} matches none of the {len(registered)} "
                                  f"registered hosts (`schedcp hosts` shows their classes)")
        classes = rollout_plan.classes(list(chosen.values()))
        for (host_class, _), ids in classes.items():
            try:
                self._fleet.check_policy(request.policy, chosen[ids[0]])
            except FailedPrecondition as exc:
                raise FailedPrecondition(f"class {host_class} cannot run it: {exc}; narrow the selector "
                                         "(e.g. sched_ext=yes)") from None
        return classes

    async def _proven(self, request: R.StartRolloutRequest) -> list[str]:
        """The classes where the policy is proven with these parameters; FailedPrecondition when none."""
        try:
            effects = await self._fleet.effects(request.policy)
        except grpc.aio.AioRpcError as exc:
            raise DependencyUnavailable(f"the learner could not say where {request.policy} is proven "
                                        f"({exc.code().name}: {exc.details()}); try again when it is up") from None
        proven = proven_classes(effects, request.parameters)
        if not proven:
            raise FailedPrecondition(f"{request.policy} with these parameters is not proven in any class yet (at "
                                     "least 3 outcomes, a mean improvement of 5 % or more, no ejection): deploy it on "
                                     "a few hosts first (`schedcp deploy HOST POLICY`), `schedcp policy show "
                                     f"{request.policy}` shows what was measured")
        return proven

    # --- running -------------------------------------------------------------------------------
    async def _launch(self, rollout: R.Rollout) -> None:
        self._live[rollout.rollout_id] = rollout
        gate = self._gates[rollout.rollout_id] = asyncio.Event()
        if rollout.state == R.ROLLOUT_STATE_RUNNING:
            gate.set()
        controls = await self._listen(rollout.rollout_id)
        self._runners[rollout.rollout_id] = asyncio.create_task(self._run(rollout, controls),
                                                                name=f"rollout {rollout.rollout_id}")

    async def _listen(self, rollout_id: str):
        """While the rollout runs here, pause, resume and abort asked on other replicas come here."""
        try:
            return await self._bus.nc.subscribe(f"{CONTROL_SUBJECT}.{rollout_id}", cb=self._on_control)
        except Exception as exc:  # it runs all the same; only controls asked elsewhere miss it
            log.warning("rollout %s: pause, resume and abort asked of other replicas cannot reach it (%s)",
                        rollout_id, exc)
            return None

    async def _run(self, rollout: R.Rollout, controls) -> None:
        """Every class's waves, then the end. A step that fails (NATS or the learner away) stops
        every class and they go on from their stored state after RETRY_S: hosts with a result are
        not started again."""
        try:
            await self._waves(rollout, rollout_plan.waves(list(rollout.waves)))
        finally:
            if controls is not None:
                with contextlib.suppress(Exception):
                    await controls.unsubscribe()

    async def _waves(self, rollout: R.Rollout, plan) -> None:
        while True:
            try:
                async with asyncio.TaskGroup() as classes:
                    for track in rollout.tracks:
                        classes.create_task(self._run_track(rollout, track, plan))
                if rollout.state != R.ROLLOUT_STATE_ABORTED:
                    await self._end(rollout)
                await self._leases.release(rollout.rollout_id)
                break
            except Exception:
                log.exception("rollout %s: a step failed; going on in %g s", rollout.rollout_id, RETRY_S)
                await asyncio.sleep(RETRY_S)
        # Ended: GetRollout reads it from the bucket from now on.
        for held in (self._live, self._gates, self._runners):
            held.pop(rollout.rollout_id, None)

    async def _run_track(self, rollout: R.Rollout, track: R.RolloutTrack, plan) -> None:
        reaches = rollout_plan.reaches(plan, len(track.host_ids))
        while track.state == R.ROLLOUT_STATE_RUNNING and rollout.state != R.ROLLOUT_STATE_ABORTED:
            if not track.waves or track.waves[-1].done:
                if len(track.waves) == len(reaches):
                    track.state = R.ROLLOUT_STATE_COMPLETED
                    track.reason = f"every wave passed: {reaches[-1]} hosts"
                    await self._store.save(rollout)
                    return
                await self._gates[rollout.rollout_id].wait()
                if rollout.state == R.ROLLOUT_STATE_ABORTED:
                    return
                wave = track.waves.add(number=len(track.waves) + 1, reach=reaches[len(track.waves)])
                wave.hosts = wave.reach - (track.waves[-2].reach if len(track.waves) > 1 else 0)
                wave.started_at.GetCurrentTime()
            await self._wave(rollout, track, track.waves[-1])

    async def _wave(self, rollout: R.Rollout, track: R.RolloutTrack, wave: R.RolloutWave) -> None:
        with _step(f"wave {wave.number}", rollout, track) as trace_id:
            wave.trace_id = trace_id
            await self._store.save(rollout)
            await self._audit(A.AUDIT_ACTION_ROLLOUT_WAVE, rollout, trace_id,
                              f"{_where(track, wave)}: starting on {wave.hosts} hosts (reaching {wave.reach} of "
                              f"{len(track.host_ids)})")
            async with asyncio.TaskGroup() as hosts:  # one failing stops the others: the wave is retried
                started = [hosts.create_task(self._host(rollout, h)) for h in _wave_hosts(track, wave)]
            results = [task.result() for task in started]
            if rollout.state == R.ROLLOUT_STATE_ABORTED:
                return
            done = [r for r in results if r is not None]
            _count(wave, done)
            effect = class_effect(await self._fleet.effects(rollout.policy), rollout.parameters, track.host_class,
                                  track.workload_cluster)
            track.class_outcomes, track.class_mean_improvement = effect.outcomes, effect.mean
            regressed, wave.judgement = judge(wave, rollout.max_rollback_fraction, effect)
            if regressed:
                await self._halt(rollout, track, wave, done, trace_id)
                return
            # Done only now: a step that fails before this is retried with the wave (its hosts'
            # results are stored, so none of them is started again).
            wave.done = True
            wave.ended_at.GetCurrentTime()
            await self._store.save(rollout)
            await self._audit(A.AUDIT_ACTION_ROLLOUT_WAVE, rollout, trace_id,
                              f"{_where(track, wave)} passed: {wave.judgement}")

    async def _host(self, rollout: R.Rollout, host_id: str) -> R.RolloutHost | None:
        """The host's result: stored already, or judged since by the canary a stopped planner
        left in flight (a resumed rollout), or from its cycle now; None when the rollout was
        aborted before the host started."""
        stored = await self._store.host(rollout.rollout_id, host_id)
        if stored is not None and stored.result != R.ROLLOUT_HOST_RESULT_UNSPECIFIED:
            return stored
        if stored is not None and (judged := await self._fleet.outcome_of(host_id, stored.cycle_id)) is not None:
            await self._store.put_host(rollout.rollout_id, judged)
            return judged
        gate = self._gates[rollout.rollout_id]
        while True:
            await gate.wait()
            async with self._slots:
                # Paused or aborted while waiting for a slot: not started.
                if rollout.state == R.ROLLOUT_STATE_ABORTED:
                    return None
                if not gate.is_set():
                    continue
                with telemetry.tracer().start_as_current_span(f"rollout host {host_id}"):
                    result = await self._fleet.deploy(host_id, rollout, lambda cycle_id: self._store.put_host(
                        rollout.rollout_id, R.RolloutHost(host_id=host_id, cycle_id=cycle_id)))
            await self._store.put_host(rollout.rollout_id, result)
            return result

    async def _halt(self, rollout: R.Rollout, track: R.RolloutTrack, wave: R.RolloutWave,
                    results: list[R.RolloutHost], trace_id: str) -> None:
        """The class stops here; the wave's hosts that kept the policy roll it back (once: a halt
        retried after a failure does not roll a host back twice, which would take off the policy
        it ran before)."""
        reason = f"rollout {rollout.rollout_id} halted in {_where(track, wave)}: {wave.judgement}"
        kept = [r for r in results if r.result == R.ROLLOUT_HOST_RESULT_KEPT]
        failures = await asyncio.gather(*(self._revert(rollout, host, reason) for host in kept if not host.reverted))
        not_reverted = [f for f in failures if f]
        undone = (f"the {len(kept) - len(not_reverted)} of its hosts that had kept it rolled back" if kept
                  else "none of its hosts had kept it")
        if not_reverted:
            undone += f", {len(not_reverted)} could not be ({not_reverted[0]})"
        wave.done = True
        wave.ended_at.GetCurrentTime()
        track.state = R.ROLLOUT_STATE_HALTED
        track.reason = f"wave {wave.number} regressed: {wave.judgement}; {undone}"
        await self._store.save(rollout)
        await self._audit(A.AUDIT_ACTION_ROLLOUT_HALT, rollout, trace_id,
                          f"{track.host_class} / {track.workload_cluster or '-'}: {track.reason}")

    async def _revert(self, rollout: R.Rollout, host: R.RolloutHost, reason: str) -> str:
        async with self._slots:
            why_not = await self._fleet.roll_back(host.host_id, reason)
        if why_not:
            host.message += f"; not rolled back: {why_not}"
        host.reverted = not why_not
        await self._store.put_host(rollout.rollout_id, host)
        return why_not and f"{host.host_id}: {why_not}"

    async def _end(self, rollout: R.Rollout) -> None:
        halted = [t for t in rollout.tracks if t.state == R.ROLLOUT_STATE_HALTED]
        completed = len(rollout.tracks) - len(halted)
        rollout.state = R.ROLLOUT_STATE_HALTED if halted else R.ROLLOUT_STATE_COMPLETED
        rollout.reason = (f"{completed} of {len(rollout.tracks)} classes completed"
                          + "".join(f"; {t.host_class} / {t.workload_cluster}: {t.reason}" for t in halted))
        action = A.AUDIT_ACTION_ROLLOUT_HALT if halted else A.AUDIT_ACTION_ROLLOUT_COMPLETE
        with _step("end", rollout) as trace_id:
            await self._store.save(rollout)
            await self._audit(action, rollout, trace_id, rollout.reason)
        log.info("rollout %s: %s", rollout.rollout_id, rollout.reason)

    # --- records -------------------------------------------------------------------------------
    def _running(self, rollout_id: str, verb: str) -> R.Rollout:
        rollout = self._live.get(rollout_id)
        if rollout is None or rollout.state in ENDED:
            raise FailedPrecondition(f"rollout {rollout_id!r} is not running and cannot be {verb} "
                                     f"({_state(rollout) if rollout else 'unknown or already ended'})")
        return rollout

    async def _step_recorded(self, name: str, action: int, rollout: R.Rollout, actor: str, reason: str) -> None:
        with _step(name, rollout) as trace_id:
            await self._store.save(rollout)
            await self._audit(action, rollout, trace_id, reason, actor)

    async def _audit(self, action: int, rollout: R.Rollout, trace_id: str, reason: str, actor: str = "") -> None:
        """One audit record; logged instead when NATS cannot take it (the rollout goes on)."""
        record = A.AuditRecord(record_id=uuid.uuid4().hex, action=action, actor=actor or rollout.actor,
                               policy_name=rollout.policy, rollout_id=rollout.rollout_id, trace_id=trace_id,
                               reason=reason)
        record.at.GetCurrentTime()
        try:
            await self._bus.publish(topology.subject(topology.Kind.AUDIT, AUDIT_HOST, rollout.rollout_id), record,
                                    msg_id=record.record_id)
        except Exception as exc:
            log.error("rollout audit record not stored (%s): %s", exc or type(exc).__name__, record)


def judge(wave: R.RolloutWave, max_fraction: float, effect) -> tuple[bool, str]:
    """(regressed, why): more than `max_fraction` of the judged hosts did not keep the policy, or
    the class's effect is negative."""
    judged = wave.kept + wave.rolled_back + wave.failed
    bad = wave.rolled_back + wave.failed
    told = (f"{wave.kept} of {judged} judged hosts kept it ({wave.rolled_back} rolled back, {wave.failed} failed, "
            f"{wave.skipped} skipped); the class's effect {effect.mean:+.0%} over {effect.outcomes} outcomes")
    if judged and bad / judged > max_fraction:
        return True, f"{told}: more than the {max_fraction:.0%} allowed did not keep it"
    if effect.outcomes and effect.mean < 0:
        return True, f"{told}: the class's effect turned negative"
    return False, told


def _count(wave: R.RolloutWave, results: list[R.RolloutHost]) -> None:
    of = [r.result for r in results]
    wave.kept = of.count(R.ROLLOUT_HOST_RESULT_KEPT)
    wave.rolled_back = of.count(R.ROLLOUT_HOST_RESULT_ROLLED_BACK)
    wave.failed = of.count(R.ROLLOUT_HOST_RESULT_FAILED)
    wave.skipped = len(of) - wave.kept - wave.rolled_back - wave.failed


def _wave_hosts(track: R.RolloutTrack, wave: R.RolloutWave) -> list[str]:
    return list(track.host_ids[wave.reach - wave.hosts:wave.reach])


def _where(track: R.RolloutTrack, wave: R.RolloutWave) -> str:
    return f"wave {wave.number} of {track.host_class} / {track.workload_cluster or 'no profile yet'}"


def kept_artifact(events: list) -> tuple[str, policy_pb2.PolicyArtifact] | None:
    """(host, artifact) of the policy a cycle kept, from its events (its RESULT's deployment and
    the verdict of the artifact it deployed); None when it kept nothing."""
    if not events or events[-1].stage != cycle_pb2.CYCLE_STAGE_RESULT:
        return None
    last = events[-1].deployment.deployment
    if events[-1].status != common_pb2.STAGE_STATUS_SUCCEEDED or last.state != A.DEPLOYMENT_STATE_KEPT:
        return None
    verified = {e.verdict.artifact.digest: e.verdict.artifact for e in events if e.verdict.claims.approved}
    artifact = verified.get(last.artifact_digest)
    return (last.host_id or events[-1].host_id, artifact) if artifact is not None else None


def _started(rollout: R.Rollout) -> str:
    classes = "; ".join(f"{t.host_class} / {t.workload_cluster or 'no profile yet'}: {len(t.host_ids)} hosts"
                        for t in rollout.tracks)
    return (f"{rollout.policy} to {sum(len(t.host_ids) for t in rollout.tracks)} hosts ({rollout.selector}) in waves "
            f"{', '.join(rollout.waves)}: {classes}")


def _proposal_id(request: R.StartRolloutRequest) -> str:
    """The same policy, parameters and selector always give the same id: proposed once."""
    key = "\n".join((request.policy, params.key(request.parameters), request.selector))
    return f"p-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _parameters(parameters) -> str:
    return "{" + ", ".join(f"{k}={params.text(v)}" for k, v in sorted(parameters.items())) + "}"


def _state(rollout: R.Rollout) -> str:
    return R.RolloutState.Name(rollout.state).removeprefix("ROLLOUT_STATE_").lower()


@contextlib.contextmanager
def _step(name: str, rollout: R.Rollout, track: R.RolloutTrack | None = None) -> Iterator[str]:
    """A rollout step as the root span of a trace of its own; yields its trace id."""
    attributes = {"schedcp.rollout.id": rollout.rollout_id, "schedcp.rollout.policy": rollout.policy}
    if track is not None:
        attributes["schedcp.rollout.class"] = f"{track.host_class} / {track.workload_cluster}"
    with telemetry.tracer().start_as_current_span(f"rollout {name}", context=otel_context.Context(),
                                                  attributes=attributes):
        yield telemetry.current_trace_id()
