"""SCX017: a DSQ consumed only by chance, at certain times or for certain names.

SCX010 asks whether a DSQ that tasks are inserted into is consumed anywhere; a scheduler can
satisfy it with a consume call that runs only when `bpf_get_prandom_u32() % 1000 == 0`, in a
time window, or when the running task has a certain name, and starve whatever it inserted
(by name, say) without any test noticing. This module finds, for every consume call
(`scx_bpf_dsq_move_to_local`, `scx_bpf_dsq_move*`, the old `scx_bpf_consume`), the conditions
it is reached under: the `if`/`else`/loop conditions around it, the `if (...) return;` before
it, `cond && consume(...)` and `cond ? consume(...) : ...`, and the same at every call site of
a helper it is in. A condition is suspect when it depends on a random draw, the time, a task's
name, a process id or a count modulo a large constant, directly or through a local or global
variable assigned from one, a helper function or a macro (followed a few levels deep).

A DSQ is starved when every consume call of it is under a suspect condition (one that is taken
both ways at different calls, the `if (time) A else B` of a rate limit, does not count). Like
the other static rules it reads the C source with regular expressions and brace matching: it is
a heuristic, not a proof (docs/verifier.md says what it cannot see).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CONSUME = re.compile(r"\b(?:scx_bpf_dsq_move_to_local|scx_bpf_consume)\s*\(\s*(\w+)"
                     r"|\bscx_bpf_dsq_move(?:_vtime)?\s*\(\s*\w+\s*,\s*\w+\s*,\s*(\w+)")
INSERT = re.compile(r"\bscx_bpf_dsq_insert(?:_vtime)?\s*\(\s*[^,()]+\s*,\s*(\w+)")
BUILTIN_DSQS = {"SCX_DSQ_LOCAL", "SCX_DSQ_GLOBAL", "SCX_DSQ_LOCAL_ON"}
# What a condition may depend on for a DSQ to be served only sometimes: (what, pattern).
SOURCES = (
    ("a random draw", re.compile(r"\bbpf_get_prandom_u32\b")),
    ("the time", re.compile(r"\b(?:bpf_ktime_get\w*|scx_bpf_now|bpf_jiffies64|jiffies(?:_64)?)\b")),
    ("a task's name", re.compile(r"\bcomm\b|\bbpf_strn?cmp\b|\b__builtin_(?:memcmp|strn?cmp)\b|"
                                 r"\bbpf_get_current_comm\b|\bcomm_has_prefix\b")),
    ("a process id", re.compile(r"(?:->|\.)\s*(?:pid|tgid)\b|\bbpf_get_current_pid_tgid\b")),
)
LARGE_MODULUS = 64  # `x % 64` and above (or `x & 63` and above) is "once in a while"
MODULO = re.compile(r"%\s*\(?\s*(0[xX][0-9a-fA-F]+|\d+|[A-Z_][A-Z0-9_]*)|&\s*\(?\s*(0[xX][0-9a-fA-F]+|\d+)")
KEYWORDS = {"if", "else", "for", "while", "do", "return", "sizeof", "switch", "case", "break", "continue",
            "struct", "const", "volatile", "static", "void", "bool", "true", "false", "u8", "u16", "u32", "u64",
            "s8", "s16", "s32", "s64", "int", "long", "unsigned", "char"}
NOT_TYPES = {"return", "case", "else", "do", "goto", "sizeof"}
KEYWORD = re.compile(r"\b(if|while|for)\s*\(")
STATEMENT = re.compile(r"(if|while|for|switch)\s*\(")
ELSE = re.compile(r"\s*else\b")
DEPTH = 4     # helpers, macros and variables followed this many levels deep
BUDGET = 20000  # call sites and conditions looked at, at most (the library needs well under 1,000)


@dataclass(frozen=True)
class Guard:
    """A condition a call is reached under (`holds`: reached when it is true, else when false)."""

    cond: str
    holds: bool
    shown: str = field(default="", compare=False)  # as written (string literals are blanked in `cond`)


@dataclass(frozen=True)
class Suspicion:
    what: str     # "a random draw", "the time"...
    through: str  # "" or how the condition reaches it: "in_window() -> last_tick -> scx_bpf_now"


@dataclass
class Site:
    """One way a consume call is reached: the call (offset in the program) and its guards."""

    offset: int
    guards: list[Guard] = field(default_factory=list)


@dataclass(frozen=True)
class Starved:
    dsq: str
    value: str | None          # the DSQ's number when it is a macro
    offset: int                # of the first consume call
    guard: Guard | None        # None: no consume call is in code a callback runs
    suspicion: Suspicion | None
    others: int                # further consume calls, each under such a condition
    where: str = ""            # the function of the first consume call


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def _directives(code: str) -> str:
    """`code` with preprocessor lines (and their continuations) and the insides of string and
    character literals blanked (a `"{"` must not end a function), offsets kept."""
    code = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", _blank, code, flags=re.M)
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'',
                  lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], code)


def macros(code: str) -> dict[str, str]:
    found = {}
    for m in re.finditer(r"^[ \t]*#\s*define\s+(\w+)((?:\([^)]*\))?)((?:[^\n]*\\\n)*[^\n]*)", code, re.M):
        found[m.group(1)] = m.group(3).replace("\\\n", " ").strip()
    return found


def _match(code: str, i: int, opening: str, closing: str) -> int:
    """Offset just past the bracket that closes the one at `i`."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == opening:
            depth += 1
        elif code[j] == closing:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


@dataclass(frozen=True)
class Function:
    name: str
    start: int   # of the body, just past `{`
    end: int     # of the body, at its `}`
    params: str  # the header: return type, name, parameters


def functions(code: str) -> list[Function]:
    """Every function defined at the top level (BPF_PROG(name, ...) or `type name(...)`)."""
    flat = _directives(code)
    found, i, header_start = [], 0, 0
    while i < len(flat):
        c = flat[i]
        if c in ";}":
            header_start = i + 1
        elif c == "{":
            end = _match(flat, i, "{", "}")
            header = flat[header_start:i].strip()
            name = re.search(r"BPF_PROG\(\s*(\w+)", header) or re.search(r"(\w+)\s*\(", header)
            if name and header.endswith(")") and "=" not in header.split("(")[0]:
                found.append(Function(name.group(1), i + 1, end - 1, header))
            i, header_start = end, end
            continue
        i += 1
    return found


def _statement_end(code: str, i: int) -> int:
    """Offset just past the statement that starts at or after `i`."""
    while i < len(code) and code[i].isspace():
        i += 1
    if code.startswith("{", i):
        return _match(code, i, "{", "}")
    keyword = STATEMENT.match(code, i)
    if keyword:
        end = _statement_end(code, _match(code, keyword.end() - 1, "(", ")"))
        if keyword.group(1) == "if":
            after = ELSE.match(code, end)
            if after:
                end = _statement_end(code, after.end())
        return end
    if code.startswith("do", i) and not (code[i + 2:i + 3].isalnum() or code[i + 2:i + 3] == "_"):
        return _statement_end(code, _statement_end(code, i + 2))
    depth = 0
    for j in range(i, len(code)):
        depth += {"(": 1, ")": -1}.get(code[j], 0)
        if code[j] == ";" and depth <= 0:
            return j + 1
    return len(code)


def _returns(statement: str) -> bool:
    """Whether a branch always leaves the function (a return at its own top level)."""
    statement = statement.strip()
    if statement.startswith("{"):
        inner = statement[1:-1]
        nested = re.sub(r"\{[^{}]*\}", "", inner)
        while nested != inner:
            inner, nested = nested, re.sub(r"\{[^{}]*\}", "", nested)
        return re.search(r"(?:^|[;{}]\s*)return\b", inner) is not None
    return statement.startswith("return")


def guard_spans(code: str, fn: Function, text: str) -> list[tuple[int, int, Guard]]:
    """The stretches of `fn`'s body that run only under a condition: the body of an `if`, a
    loop or an `else`, and what follows an `if (...) return;` up to the end of its block.
    (`code` is `text` with literals blanked, at the same offsets.)"""
    spans = []
    for m in KEYWORD.finditer(code, fn.start, fn.end):
        paren = m.end() - 1
        close = _match(code, paren, "(", ")")
        cond, shown = code[paren + 1:close - 1], text[paren + 1:close - 1]
        if m.group(1) == "for":
            parts, shown_parts = cond.split(";"), shown.split(";")
            cond = parts[1] if len(parts) == 3 else ""
            shown = shown_parts[1] if len(shown_parts) == 3 else cond
        cond, shown = " ".join(cond.split()), " ".join(shown.split())
        if not cond:
            continue
        then_end = _statement_end(code, close)
        spans.append((close, then_end, Guard(cond, True, shown)))
        if m.group(1) != "if":
            continue
        after = ELSE.match(code, then_end, fn.end)
        if after:
            spans.append((after.end(), _statement_end(code, after.end()), Guard(cond, False, shown)))
        elif _returns(code[close:then_end]):
            spans.append((then_end, _block_end(code, m.start(), fn.end), Guard(cond, False, shown)))
    return spans


def _block_end(code: str, i: int, limit: int) -> int:
    depth = 0
    for j in range(i, limit):
        depth += {"{": 1, "}": -1}.get(code[j], 0)
        if depth < 0:
            return j
    return limit


def _expression_guard(code: str, fn: Function, offset: int, text: str) -> Guard | None:
    """`a && call(...)`, `a || call(...)`, `a ? call(...) : b`, `a ? b : call(...)`."""
    start = max(code.rfind(c, fn.start, offset) for c in ";{}")
    prefix = code[max(start + 1, fn.start):offset]
    depth, j, colon = 0, len(prefix), False
    while j > 0:
        j -= 1
        c = prefix[j]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth < 0:
                break
        elif depth == 0 and c == ":" and not colon:
            colon = True
        elif depth == 0 and (c == "?" or (j > 0 and prefix[j - 1:j + 1] in ("&&", "||"))):
            op = "?" if c == "?" else prefix[j - 1:j + 1]
            k, d = j - (1 if c == "?" else 2), 0
            while k > 0:  # the start of the condition: an unmatched `(` or an assignment
                k -= 1
                if prefix[k] == ")":
                    d += 1
                elif prefix[k] == "(":
                    d -= 1
                    if d < 0:
                        break
                elif d == 0 and prefix[k] == "=" and prefix[k - 1] not in "=!<>" and prefix[k + 1:k + 2] != "=":
                    break
            base = max(start + 1, fn.start)
            cond, shown = (re.sub(r"^(?:return|if\s*\()\s*", "", " ".join(t[base + k + 1:base + j - (
                0 if c == "?" else 1)].split())) for t in (code, text))
            if not cond:
                return None
            holds = (op == "?" and not colon) or op == "&&"
            return Guard(cond, holds, shown)
    return None


class TooComplex(Exception):
    """The candidate has more paths or definitions than the rule follows (a hostile source)."""


class Program:
    """The candidate (and the library headers it includes) as the rule reads it."""

    def __init__(self, code: str, headers: str, callbacks: set[str], budget: int = BUDGET):
        self.budget = budget
        self.own_end = len(code)
        self.text = code + "\n" + headers
        self.code = _directives(self.text)
        self.macros = macros(code + "\n" + headers)
        self.functions = functions(self.code)
        self.callbacks = callbacks
        self._calls: dict[str, list[int]] = {}
        self._spans: dict[str, list[tuple[int, int, Guard]]] = {}
        self._defined: dict[tuple[str, Function | None], list[tuple[str, Function | None]]] = {}
        self._suspected: dict[tuple[str, Function | None], Suspicion | None] = {}

    def spend(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise TooComplex

    def function_at(self, offset: int) -> Function | None:
        return next((f for f in self.functions if f.start <= offset < f.end), None)

    def function(self, name: str) -> Function | None:
        return next((f for f in self.functions if f.name == name), None)

    def sites(self, offset: int, depth: int = 0) -> list[Site]:
        """Every way `offset` is reached from a callback the ops name: its guards in its function,
        plus those of each call site of that function when it is a helper; none when no callback
        reaches it (dead code, or code outside any function the rule can find)."""
        self.spend()
        fn = self.function_at(offset)
        if fn is None:
            return []
        if fn.name not in self._spans:
            self._spans[fn.name] = guard_spans(self.code, fn, self.text)
        local = [g for start, end, g in self._spans[fn.name] if start <= offset < end]
        guard = _expression_guard(self.code, fn, offset, self.text)
        local += [guard] if guard else []
        if fn.name not in self._calls:
            self._calls[fn.name] = [m.start() for m in re.finditer(rf"\b{fn.name}\s*\(", self.code)
                                    if self.function_at(m.start()) not in (None, fn)]
        calls = self._calls[fn.name]
        if fn.name in self.callbacks or depth >= DEPTH:
            return [Site(offset, local)]
        found = []
        for call in calls:
            for site in self.sites(call, depth + 1):
                self.spend()
                found.append(Site(offset, local + site.guards))
        return found

    def suspicion(self, text: str, fn: Function | None, depth: int = 0, seen: frozenset = frozenset()
                  ) -> Suspicion | None:
        """Whether `text` (an expression in `fn`) depends on chance, time, a name, a pid or a
        count modulo a large constant; how, when through a name it uses."""
        if depth == 0:
            if (text, fn) not in self._suspected:
                self._suspected[text, fn] = self._suspicion(text, fn)
            return self._suspected[text, fn]
        return self._suspicion(text, fn, depth, seen)

    def _suspicion(self, text: str, fn: Function | None, depth: int = 0, seen: frozenset = frozenset()
                   ) -> Suspicion | None:
        self.spend()
        for what, pattern in SOURCES:
            m = pattern.search(text)
            if m:
                return Suspicion(what, "")
        for name in dict.fromkeys(re.findall(r"\b([A-Za-z_]\w*)\b", text)) if depth < DEPTH else ():
            if name in KEYWORDS or name in seen or name.startswith(("scx_bpf_", "bpf_map_")):
                continue
            for definition, scope in self._definitions(name, fn):
                found = self.suspicion(definition, scope, depth + 1, seen | {name})
                if found:
                    label = f"{name}()" if self.function(name) else name
                    return Suspicion(found.what, f"{label} -> {found.through or _evidence(definition, found)}")
        for m in MODULO.finditer(text):
            n = self._number(m.group(1) or m.group(2))
            if n is not None and (n >= LARGE_MODULUS if m.group(1) else n + 1 >= LARGE_MODULUS and not n & (n + 1)):
                return Suspicion(f"a count modulo {n if m.group(1) else n + 1}", "")
        return None

    def _definitions(self, name: str, fn: Function | None) -> list[tuple[str, Function | None]]:
        """What `name` stands for: a macro's body, a helper's body, the values assigned to it
        (in `fn` when it is a local of `fn`, anywhere otherwise)."""
        key = (name, fn)
        if key not in self._defined:
            self.spend()
            found = [(self.macros[name], fn)] if name in self.macros else []
            helper = self.function(name)
            if helper:
                found.append((self.code[helper.start:helper.end], helper))
            else:
                declared = re.compile(rf"\b(\w+)\s+\**{name}\s*[=;,)\[]")
                local = fn is not None and any(
                    d.group(1) not in NOT_TYPES
                    for d in [*declared.finditer(fn.params), *declared.finditer(self.code, fn.start, fn.end)])
                assign = re.compile(rf"\b{name}\s*(?:\[[^\]]*\])?\s*(?:[-+*/%&|^]|<<|>>)?=(?!=)\s*([^;]+);")
                for m in assign.finditer(self.code, fn.start if local else 0, fn.end if local else len(self.code)):
                    found.append((m.group(1), self.function_at(m.start())))
            self._defined[key] = found
        return self._defined[key]

    def _number(self, token: str, depth: int = 0) -> int | None:
        token = token.rstrip("uUlL")
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", token):
            return int(token, 16)
        if token.isdigit():
            return int(token)
        if token in self.macros and depth < DEPTH:
            value = self.macros[token].strip("() ")
            return self._number(value, depth + 1) if re.fullmatch(r"\w+", value) else None
        return None

    def dsq_value(self, dsq: str) -> str | None:
        n = self._number(dsq)
        return None if n is None or dsq.isdigit() else str(n)


def _split(cond: str, op: str) -> list[str]:
    """`cond` split at `op` (`&&` or `||`) outside parentheses."""
    parts, depth, last, i = [], 0, 0, 0
    while i < len(cond):
        c = cond[i]
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth == 0 and cond.startswith(op, i):
            parts.append(cond[last:i].strip())
            last = i = i + 2
            continue
        i += 1
    return [*parts, cond[last:].strip()]


def _unwrapped(cond: str) -> str:
    cond = cond.strip()
    while cond.startswith("(") and _match(cond, 0, "(", ")") == len(cond):
        cond = cond[1:-1].strip()
    return cond


def _rare(atom: str) -> bool | None:
    """Whether a comparison holds rarely (`x % N == 0`, `is_daemon(p)`), often (`x % N`,
    `x != y`), or it cannot be told (`now - last > T`, `r < K`): which way a guard restricts."""
    top = re.sub(r"\([^()]*\)", "()", atom)
    while top != (top := re.sub(r"\([^()]*\)", "()", top)):
        pass
    if re.fullmatch(r"\s*(?:bpf_strn?cmp|__builtin_(?:memcmp|strn?cmp)|str\w*cmp|memcmp)\s*\(\)\s*", top):
        return False  # a comparison function: non-zero (a mismatch) is the usual answer
    if "!=" in top:
        return False
    if "==" in top:
        return True
    if re.search(r"[<>]", top.replace("<<", "").replace(">>", "").replace("->", "")):
        return None
    return not re.search(r"[%&]", top)  # `x % N` is usually non-zero; a named predicate, the exception


def _negates_all(cond: str) -> bool:
    """Whether the leading `!` of `cond` applies to all of it: `!(a == b)`, `!x`, `!f(a, b)`."""
    m = re.match(r"!\s*(?:[\w.]|->)*\s*", cond)
    rest = cond[m.end():]
    return not rest or (rest.startswith("(") and _match(cond, m.end(), "(", ")") == len(cond))


def restricts(program: Program, guard: Guard, fn: Function | None) -> Suspicion | None:
    """How `guard` makes its call depend on chance, time, a name..., when it does: every way
    through an `a || b` must, one part of an `a && b` is enough, and the guard must hold in the
    rare direction (`x % 1000 == 0` holds, `x % 1000` fails); an inequality (`now - last > T`, the
    period of a rate limit) restricts when it holds, not when it fails."""
    program.spend()
    cond = _unwrapped(guard.cond)
    either = _split(cond, "||" if guard.holds else "&&")
    if len(either) > 1:
        found = [restricts(program, Guard(part, guard.holds), fn) for part in either]
        return found[0] if all(found) else None
    each = _split(cond, "&&" if guard.holds else "||")
    if len(each) > 1:
        return next((s for part in each if (s := restricts(program, Guard(part, guard.holds), fn))), None)
    if cond.startswith("!") and _negates_all(cond):
        return restricts(program, Guard(cond[1:], not guard.holds), fn)
    suspicion = program.suspicion(cond, fn)
    rare = _rare(cond)
    return suspicion if suspicion and (guard.holds if rare is None else rare == guard.holds) else None


def _evidence(definition: str, found: Suspicion) -> str:
    for what, pattern in SOURCES:
        if what == found.what:
            m = pattern.search(definition)
            called = definition[m.end():].lstrip().startswith("(")
            return m.group(0).lstrip("->. ") + ("()" if called else "")
    m = MODULO.search(definition)
    return f"x {' '.join(m.group(0).split())}" if m else "it"


def starved(code: str, headers: str, callbacks: set[str]) -> list[Starved]:
    """The DSQs the candidate inserts into whose every consume call is under a suspect condition.
    Consume calls in the library headers count only in the callbacks the ops name."""
    program = Program(code, headers, callbacks)
    inserted = dict.fromkeys(m.group(1) for m in INSERT.finditer(program.code[:program.own_end]))
    consumes: dict[str, list[int]] = {}
    for m in CONSUME.finditer(program.code):
        fn = program.function_at(m.start())
        if re.match(r"\s*\**\s*\w+\s*[,)]", program.code[m.end():]) or (
                m.start() >= program.own_end and (fn is None or fn.name not in callbacks)):
            continue  # a declaration (`(u64 dsq_id)`), or a library header's code the ops do not use
        consumes.setdefault(m.group(1) or m.group(2), []).append(m.start())
    found = []
    for dsq in inserted:
        if dsq in BUILTIN_DSQS or dsq.startswith("SCX_DSQ_LOCAL_ON") or dsq not in consumes:
            continue  # SCX009 / SCX010 speak for DSQs never consumed
        sites = [s for offset in consumes[dsq] for s in program.sites(offset)]
        if not sites:
            first = min(consumes[dsq])
            fn = program.function_at(first)
            found.append(Starved(dsq, program.dsq_value(dsq), first if first < program.own_end else 0, None, None,
                                 len(set(consumes[dsq])) - 1, fn.name if fn else ""))
            continue
        judged = []
        for site in sites:
            suspect = [(g, s) for g in site.guards
                       if (s := restricts(program, g, program.function_at(site.offset)))]
            judged.append(suspect)
        # a condition taken one way at one call and the other way at another decides nothing
        every = {g for site in sites for g in site.guards}
        both_ways = {g.cond for g in every if Guard(g.cond, not g.holds) in every}
        judged = [[(g, s) for g, s in suspect if g.cond not in both_ways] for suspect in judged]
        if all(judged):
            guard, suspicion = judged[0][0]
            own = [s.offset for s in sites if s.offset < program.own_end]
            found.append(Starved(dsq, program.dsq_value(dsq), min(own) if own else 0, guard, suspicion,
                                 len(set(consumes[dsq])) - 1))
    return found


def sentence(s: Starved) -> str:
    name = f"DSQ {s.value} ({s.dsq})" if s.value else f"DSQ {s.dsq}"
    if s.guard is None or s.suspicion is None:
        where = f"in {s.where}(), " if s.where else "outside any function, "
        return (f"{name} is consumed only {where}which no callback of the ops runs: tasks inserted into it "
                "can wait forever")
    condition = s.guard.shown or s.guard.cond
    when = f"when {condition}" if s.guard.holds else f"unless {condition}"
    why = f"a condition on {s.suspicion.what}" + (f" (through {s.suspicion.through})" if s.suspicion.through else "")
    more = f" (and {s.others} other consume call{'s' if s.others > 1 else ''}, each under such a condition)" \
        if s.others else ""
    return f"{name} is consumed only {when}, {why}{more}: tasks inserted into it can wait forever"
