"""`schedcp llm check`: what the planner knows of the LLM endpoint its openai provider uses (the
address, the model, the structured-output mode negotiated with it, the last call's latency and
tokens), and with --probe, one small call made now."""

from __future__ import annotations

import argparse

from schedcp.cli.console import print_message, say
from schedcp.cli.cycle import Add, ask
from schedcp.runtime.config import Settings
from schedcp.runtime.errors import EXIT_FAILED
from schedcp.v1 import planner_pb2, planner_pb2_grpc

# A probe may negotiate through every structured-output mode (json_schema, json_object+schema,
# json_object, text), each call retried by the client.
PROBE_MODES = 4


def cmd_llm(settings: Settings, args: argparse.Namespace) -> int:
    request = planner_pb2.LlmStatusRequest(probe=args.probe, model=args.model)
    timeout_s = settings.rpc_timeout_s
    if args.probe:
        timeout_s += PROBE_MODES * settings.llm_timeout_s * (1 + settings.llm_max_retries)
    status = ask(settings.planner_addr, timeout_s,
                 lambda channel: planner_pb2_grpc.PlannerServiceStub(channel).LlmStatus(request))
    if args.json:
        print_message(status, with_defaults=True)
    else:
        say("\n".join(f"{name:<18} {value}" for name, value in lines(status, args.probe)))
    return EXIT_FAILED if args.probe and not status.probe_ok else 0


def lines(status: planner_pb2.LlmStatusResponse, probed: bool) -> list[tuple[str, str]]:
    """The status as (name, value) rows, in words."""
    rows = [("endpoint", status.endpoint), ("model", status.model),
            ("API key", "configured" if status.key_configured else "none (OPENAI_API_KEY): the rules decide"),
            ("default provider", status.default_provider),
            ("structured output", status.structured_output or "not negotiated yet (the next call negotiates; "
                                                              "--probe makes one now)")]
    rows.append(("last call", describe(status.last_call) if status.HasField("last_call") else "none yet"))
    if probed:
        rows.append(("probe", ("ok: " if status.probe_ok else "failed: ") + status.probe_message))
    return rows


def describe(call: planner_pb2.LlmCall) -> str:
    when = call.at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
    what = call.error or f"{call.input_tokens} tokens in, {call.output_tokens} out"
    return f"{when}, as {call.structured_output}, {call.latency_ms:.0f} ms: {what}"


def register(add: Add) -> None:
    """Add `llm` to the CLI's parser."""
    command = add("llm", cmd_llm, "Check the LLM endpoint the planner's openai provider uses: its address and "
                  "model, whether a key is set, the structured-output mode negotiated with it and the last call's "
                  "latency and tokens. --probe makes one small call now (negotiating the mode); exit 1 when it "
                  "gets no valid answer.")
    command.add_argument("action", choices=["check"], help="check: show the endpoint's state")
    command.add_argument("--probe", action="store_true", help="make one small call now (a few tokens)")
    command.add_argument("--model", default="", help="another model on the same endpoint (default: "
                         "SCHEDCP_LLM_MODEL)")
