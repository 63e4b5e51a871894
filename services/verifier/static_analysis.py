"""Stage 1 of verification: static analysis of a sched_ext scheduler's C source.

Every candidate is treated as hostile. The rules below are cheap, run before anything is
compiled, and each finding names a stable rule id, a line and what to change. They do not
replace the kernel's verifier (stage 3), which proves memory safety and termination; they
catch what the kernel would accept but schedcp must not run (helpers that write user memory
or read arbitrary kernel memory, kfuncs outside the allow-list, a scheduler that would starve
tasks or that the watchdog cannot catch in time) and give faster, clearer feedback for the
planner's repair loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from schedcp.domain import policies
from schedcp.v1 import verdict_pb2
from services.verifier import starvation

ERROR, WARNING = verdict_pb2.SEVERITY_ERROR, verdict_pb2.SEVERITY_WARNING
MAX_BYTES = 64 * 1024
MAX_LINES = 1500
MAX_TIMEOUT_MS = 30000
# The library's own headers (reviewed with the library). A candidate may include them, and the
# callbacks they define (vtime_sched.bpf.h's) are read there when a rule looks at a callback.
POLICY_HEADERS = ("common.bpf.h", "vtime.bpf.h", "vtime_sched.bpf.h")
ALLOWED_INCLUDES = {*(f'"{h}"' for h in POLICY_HEADERS), '"vmlinux.h"', "<bpf/bpf_helpers.h>", "<bpf/bpf_tracing.h>",
                    "<bpf/bpf_core_read.h>"}
ALLOWED_KFUNCS = {
    "scx_bpf_create_dsq", "scx_bpf_dsq_insert", "scx_bpf_dsq_insert_vtime", "scx_bpf_dsq_move_to_local",
    "scx_bpf_select_cpu_dfl", "scx_bpf_kick_cpu", "scx_bpf_dsq_nr_queued", "scx_bpf_task_cpu", "scx_bpf_now",
    "scx_bpf_task_running", "scx_bpf_nr_cpu_ids", "scx_bpf_test_and_clear_cpu_idle", "scx_bpf_pick_idle_cpu",
    "scx_bpf_pick_any_cpu", "scx_bpf_get_idle_cpumask", "scx_bpf_put_idle_cpumask", "scx_bpf_cpuperf_set",
}
ALLOWED_HELPERS = {
    "bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_delete_elem", "bpf_ktime_get_ns",
    "bpf_get_prandom_u32", "bpf_get_smp_processor_id", "bpf_task_storage_get", "bpf_task_storage_delete",
    "bpf_get_current_pid_tgid", "bpf_spin_lock", "bpf_spin_unlock", "bpf_cpumask_test_cpu",
}
# Helpers that reach outside the scheduler's own data: never, whatever the kernel allows.
FORBIDDEN_HELPERS = {
    "bpf_probe_write_user": "writes user memory",
    "bpf_override_return": "changes the return value of kernel functions",
    "bpf_probe_read_kernel": "reads arbitrary kernel memory",
    "bpf_probe_read_kernel_str": "reads arbitrary kernel memory",
    "bpf_probe_read": "reads arbitrary memory",
    "bpf_probe_read_user": "reads user memory",
    "bpf_probe_read_user_str": "reads user memory",
    "bpf_copy_from_user": "reads user memory",
    "bpf_send_signal": "signals processes",
    "bpf_send_signal_thread": "signals processes",
    "bpf_sys_bpf": "issues bpf() system calls",
    "bpf_d_path": "reads file paths",
    "bpf_trace_printk": "writes to the trace pipe",
}
BUILTIN_DSQS = {"SCX_DSQ_LOCAL", "SCX_DSQ_GLOBAL", "SCX_DSQ_LOCAL_ON"}


@dataclass
class Source:
    """The candidate's text, with comments blanked out (line numbers kept), and the code of the
    library headers it includes."""

    text: str
    code: str
    headers: str = ""

    @classmethod
    def of(cls, text: str) -> Source:
        included = policies.library_headers(text, policies.LIBRARY / "sched_ext")
        headers = "\n".join(_uncommented(h.read_text()) for h in included if h.name in POLICY_HEADERS)
        return cls(text, _uncommented(text), headers)

    def line_of(self, offset: int) -> int:
        return self.code.count("\n", 0, offset) + 1

    def ops(self) -> tuple[re.Match | None, dict[str, str]]:
        """The `SEC(".struct_ops.link") struct sched_ext_ops` definition and its fields."""
        match = re.search(r'SEC\(\s*"\.struct_ops\.link"\s*\)\s*struct\s+sched_ext_ops\s+\w+\s*=\s*\{(.*?)\};',
                          self.code, re.S)
        if not match:
            return None, {}
        fields = dict(re.findall(r"\.(\w+)\s*=\s*([^,]+?)\s*(?:,|$)", match.group(1), re.M))
        return match, {k: v.strip() for k, v in fields.items()}

    def function_body(self, name: str) -> str | None:
        """Body of a BPF_PROG(name, ...) or plain function called `name`: the candidate's own,
        else one an included library header defines."""
        own = _body(self.code, name)
        return own if own is not None else _body(self.headers, name)


def _uncommented(text: str) -> str:
    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, text, flags=re.S)


def _body(code: str, name: str) -> str | None:
    match = re.search(rf"(?:BPF_PROG\(\s*{name}\b[^)]*\)|\b{name}\s*\([^;{{]*\))\s*\{{", code)
    if not match:
        return None
    depth, start = 1, match.end()
    for i in range(start, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return code[start:i]
    return code[start:]


def finding(rule: str, severity: int, line: int, message: str, hint: str = "") -> verdict_pb2.Finding:
    return verdict_pb2.Finding(rule_id=rule, severity=severity, line=line, message=message, hint=hint)


Rule = Callable[[Source], Iterator[verdict_pb2.Finding]]


def _size(src: Source):
    lines = src.text.count("\n") + 1
    if len(src.text.encode()) > MAX_BYTES or lines > MAX_LINES:
        yield finding("SCX001", ERROR, 1, f"source is {len(src.text.encode())} bytes / {lines} lines; "
                      f"the limit is {MAX_BYTES} bytes and {MAX_LINES} lines",
                      "a scheduler this size cannot be reviewed")


def _includes(src: Source):
    for m in re.finditer(r"^\s*#\s*include\s*([<\"][^>\"]+[>\"])", src.code, re.M):
        if m.group(1) not in ALLOWED_INCLUDES:
            yield finding("SCX002", ERROR, src.line_of(m.start()), f"#include {m.group(1)} is not allowed",
                          f"use only {', '.join(sorted(ALLOWED_INCLUDES))}")


def _calls(src: Source):
    for m in re.finditer(r"\b((?:bpf|scx_bpf)_\w+)\s*\(", src.code):
        name, line = m.group(1), src.line_of(m.start())
        if name in FORBIDDEN_HELPERS:
            yield finding("SCX003", ERROR, line, f"{name} {FORBIDDEN_HELPERS[name]}: forbidden in schedulers")
        elif name.startswith("scx_bpf_") and name not in ALLOWED_KFUNCS:
            yield finding("SCX004", ERROR, line, f"kfunc {name} is not on the allow-list",
                          "allowed: " + ", ".join(sorted(ALLOWED_KFUNCS)))
        elif name.startswith("bpf_") and not name.startswith("bpf_map") and name not in ALLOWED_HELPERS \
                and not re.match(r"bpf_(log2l?|cpumask_\w+)$", name):
            yield finding("SCX004", ERROR, line, f"helper {name} is not on the allow-list",
                          "allowed: " + ", ".join(sorted(ALLOWED_HELPERS)))
    for m in re.finditer(r"extern\s[^;]*?\b(\w+)\s*\([^;]*\)\s*__ksym", src.code):
        if m.group(1) not in ALLOWED_KFUNCS:
            yield finding("SCX004", ERROR, src.line_of(m.start()), f"kfunc {m.group(1)} is not on the allow-list")


def _ops(src: Source):
    match, fields = src.ops()
    if match is None:
        yield finding("SCX005", ERROR, 1, 'no sched_ext_ops in SEC(".struct_ops.link")',
                      "declare `SEC(\".struct_ops.link\") struct sched_ext_ops NAME_ops = { ... };`")
        return
    line = src.line_of(match.start())
    definitions = len(re.findall(r'SEC\(\s*"\.?struct_ops(?:\.link)?"\s*\)\s*struct', src.code))
    if definitions > 1:
        yield finding("SCX005", ERROR, line, f"{definitions} struct_ops definitions; exactly one is loaded",
                      "keep one sched_ext_ops: what is reviewed must be what is attached")
    if "name" not in fields:
        yield finding("SCX006", ERROR, line, "the ops have no .name", 'add .name = "schedcp_..."')
    elif not re.fullmatch(r'"[A-Za-z0-9_.]{1,127}"', fields["name"]):
        yield finding("SCX006", ERROR, line, f".name {fields['name'][:80]} is not a plain name",
                      "the kernel shows it in sysfs: letters, digits, '_' and '.' only, at most 127")
    timeout = fields.get("timeout_ms", "")
    if not timeout.isdigit() or not 0 < int(timeout) <= MAX_TIMEOUT_MS:
        yield finding("SCX007", ERROR, line,
                      f".timeout_ms must be set to 1..{MAX_TIMEOUT_MS} (got {timeout or 'none'})",
                      "the watchdog ejects a scheduler that leaves tasks runnable longer than this")
    exit_fn = _fn_name(fields.get("exit", ""))
    body = src.function_body(exit_fn) if exit_fn else None
    if body is None or "SCHEDCP_RECORD_EXIT" not in body:
        yield finding("SCX012", WARNING, line, "ops.exit does not record why the scheduler exited",
                      "define .exit and call SCHEDCP_RECORD_EXIT(ei) so the loader can report ejections")
    enqueue = _fn_name(fields.get("enqueue", ""))
    if enqueue:
        body = src.function_body(enqueue) or ""
        if not re.search(r"scx_bpf_dsq_insert(_vtime)?\s*\(", body):
            yield finding("SCX013", ERROR, line, f"ops.enqueue ({enqueue}) never queues the task: runnable tasks "
                          "would starve", "every path of enqueue must call scx_bpf_dsq_insert or _insert_vtime")


def _fn_name(value: str) -> str:
    match = re.search(r"(\w+)\s*$", value)
    return match.group(1) if match else ""


def _licence(src: Source):
    common_header = re.search(r'#\s*include\s*"(common|vtime)\.bpf\.h"', src.code)
    if common_header or re.search(r'SEC\("license"\)\s*=\s*"GPL"', src.code):
        return
    yield finding("SCX008", ERROR, 1, "the program is not GPL-licensed", 'include "common.bpf.h" (it declares GPL)')


def _dsqs(src: Source):
    created = set(re.findall(r"scx_bpf_create_dsq\s*\(\s*(\w+)", src.code))
    consumed = set(re.findall(r"scx_bpf_dsq_move(?:_to_local)?\s*\(\s*(\w+)", src.code))
    for m in re.finditer(r"scx_bpf_dsq_insert(?:_vtime)?\s*\(\s*\w+\s*,\s*(\w+)", src.code):
        dsq, line = m.group(1), src.line_of(m.start())
        if dsq in BUILTIN_DSQS or dsq.startswith("SCX_DSQ_LOCAL_ON"):
            continue
        if dsq not in created:
            yield finding("SCX009", ERROR, line, f"DSQ {dsq} is used but never created",
                          "create it in ops.init with scx_bpf_create_dsq")
        if dsq not in consumed:
            yield finding("SCX010", ERROR, line, f"DSQ {dsq} is inserted into but never consumed: its tasks would "
                          "starve", "move it to a local DSQ in ops.dispatch (scx_bpf_dsq_move_to_local)")


def _starved(src: Source):
    ops, fields = src.ops()
    if ops is None:
        return  # SCX005: without ops no callback runs, and nothing is consumed
    callbacks = {_fn_name(v) for v in fields.values()}
    try:
        starved = starvation.starved(src.code, src.headers, callbacks)
    except (starvation.TooComplex, RecursionError):
        yield finding("SCX017", ERROR, 1, "the paths to the DSQ consume calls are too many or too deeply nested to "
                      "check that every DSQ is served", "write ops.dispatch plainly: a few helpers, shallow nesting")
        return
    for s in starved:
        yield finding("SCX017", ERROR, src.line_of(s.offset), starvation.sentence(s),
                      "consume every DSQ you insert into whenever it has tasks (e.g. try it in ops.dispatch "
                      "before or after the others); favour tasks by order or slice, not by skipping their queue")


def _loops(src: Source):
    for m in re.finditer(r"\bwhile\s*\(\s*(1|true)\s*\)|\bfor\s*\(\s*[^;]*;\s*;", src.code):
        yield finding("SCX011", ERROR, src.line_of(m.start()), "an endless loop",
                      "loops must have a constant bound (e.g. for (int i = 0; i < 16; i++))")
    params = set(re.findall(r"const volatile [\w ]+?\b(\w+)\s*(?:\[\w*\])?\s*=", src.code))
    for m in re.finditer(r"\bfor\s*\([^;]*;\s*\w+\s*(?:<|<=)\s*([^;]+);", src.code):
        bound = re.split(r"&&|\|\|", m.group(1))[0].strip()  # `i < N && more` is bounded by N
        if not re.fullmatch(r"\d+|[A-Z_][A-Z0-9_]*|sizeof\b.*", bound) and bound not in params:
            yield finding("SCX011", WARNING, src.line_of(m.start()), f"loop bound {bound!r} is not a constant",
                          "the kernel verifier may reject it; bound loops by a literal, a macro or a parameter")
    for m in re.finditer(r"\bwhile\s*\(\s*([^)]*)\)", src.code):
        after_block = src.code[:m.start()].rstrip().endswith("}")  # the end of a do { } while
        if not after_block and m.group(1).strip() not in ("1", "true"):
            yield finding("SCX011", WARNING, src.line_of(m.start()), "a while loop",
                          "prefer for loops with a constant bound")


RULES: tuple[Rule, ...] = (_size, _includes, _calls, _ops, _licence, _dsqs, _starved, _loops)


def analyse(text: str) -> list[verdict_pb2.Finding]:
    """Every finding, errors first, then by line."""
    src = Source.of(text)
    found = [f for rule in RULES for f in rule(src)]
    return sorted(found, key=lambda f: (-f.severity, f.line, f.rule_id))


def passed(findings: list[verdict_pb2.Finding]) -> bool:
    return not any(f.severity == ERROR for f in findings)
