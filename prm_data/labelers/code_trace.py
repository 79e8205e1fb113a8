"""What each step of a code solution establishes: its traced values on the problem's tests, in the sandbox.

The code half of `reference_match` (MatchTIR's matching, arXiv:2601.10712, over
effects instead of stated computations). A solution's code is put together
from its steps (the fenced blocks of a step, or the whole step when the
solution has no fence at all), run in the operating-system sandbox
(`sandbox.run_python`: rollout code is untrusted and never runs in-process)
with the problem's `setup` and each of its tests, under a `sys.settrace` tracer
that follows the outermost call of the problem's `entry_point`: at every line
event it records the function's local variables (as `repr`s, truncated), at
every return the returned value, and at an exception the line that raised.
Each line's *effects* are the values it created or changed (read off the
snapshot at the next event), and the `def` line's are the argument values the
call binds; a step's effects on a test are the effects of the lines it holds,
so variables may be named differently and still match.

`trace_solution(...)` returns, per test, whether it passed and each step's
effects; `reference_match` matches the steps of a rollout to the steps of the
problem's reference by these effects with `linear_sum_assignment`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from prm_data.labelers.sandbox import SandboxConfig, run_python
from prm_data.steps import split_steps
from prm_data.verifiers.protocol import OutcomeSpec

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)
_FENCE_LINE = re.compile(r"^\s*```[ \t]*(\w*)[ \t]*$")  # a line that opens (with its language) or closes a fence
_PYTHON_TAGS = ("", "python", "py", "python3")
MAX_EVENTS = 2000  # per test: a loop that runs longer is cut there (its effects so far still count)
MAX_REPR = 200

# The program run in the sandbox. It reads its payload from a JSON literal, runs the solution, then each test
# under the tracer, and prints one JSON line. Its own names start with `_trace_` to stay out of the solution's way.
_TRACER = r'''
import json as _trace_json, sys as _trace_sys
_trace_payload = _trace_json.loads(PAYLOAD)
_trace_entry = _trace_payload["entry_point"]
_trace_out = {"tests": [], "load_error": None}

def _trace_repr(value):
    try:
        text = repr(value)
    except Exception as exc:
        text = "<unrepresentable %s>" % type(exc).__name__
    return text[:MAX_REPR]

def _trace_run_test(source):
    record = {"events": [], "passed": False, "error": None}
    depth = [0]
    def local(frame, event, arg):
        if len(record["events"]) >= MAX_EVENTS:
            return None
        if event == "line":
            record["events"].append(["line", frame.f_lineno, {k: _trace_repr(v) for k, v in frame.f_locals.items()}])
        elif event == "return":
            record["events"].append(["return", frame.f_lineno, {"<return>": _trace_repr(arg)}])
            depth[0] -= 1
        elif event == "exception":
            record["events"].append(["exception", frame.f_lineno, {"<raised>": arg[0].__name__}])
        return local
    def tracer(frame, event, arg):
        code = frame.f_code
        if event != "call" or code.co_name != _trace_entry or code.co_filename != "<solution>" or depth[0] > 0:
            return None
        depth[0] += 1
        record["events"].append(["call", frame.f_lineno, {k: _trace_repr(v) for k, v in frame.f_locals.items()}])
        return local
    _trace_sys.settrace(tracer)
    try:
        exec(compile(source, "<test>", "exec"), dict(_trace_namespace))
        record["passed"] = True
    except BaseException as exc:
        record["error"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
    finally:
        _trace_sys.settrace(None)
    return record

_trace_namespace = {"__name__": "__solution__"}
try:
    exec(compile(_trace_payload["code"], "<solution>", "exec"), _trace_namespace)
    exec(compile(_trace_payload["setup"], "<setup>", "exec"), _trace_namespace)
except BaseException as exc:
    _trace_out["load_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
if _trace_out["load_error"] is None:
    for _trace_test in _trace_payload["tests"]:
        _trace_out["tests"].append(_trace_run_test(_trace_test))
print("\n" + _trace_json.dumps(_trace_out))
'''


@dataclass(frozen=True)
class CodeSteps:
    """A solution's program and, per step, the 1-based line numbers of the program it wrote."""

    code: str
    lines: tuple[tuple[int, ...], ...]


def code_of_steps(steps: Sequence[str]) -> CodeSteps:
    """The program the steps write: the lines inside their Python fences, in order, or every step whole when
    none has a fence. A fence may span steps (`code_block` steps: the first opens it, the last closes it) or
    sit inside one; a fence left open (a solution cut off by max_tokens) runs to the end."""
    fenced = any("```" in s for s in steps)
    program: list[str] = []
    spans: list[tuple[int, ...]] = []
    inside: str | None = None  # "python" inside a Python fence, "other" inside another language's
    for step in steps:
        start = len(program)
        for line in step.rstrip("\n").split("\n"):
            fence = _FENCE_LINE.match(line)
            if not fenced:
                program.append(line)
            elif fence:
                inside = None if inside else ("python" if fence.group(1).lower() in _PYTHON_TAGS else "other")
            elif inside == "python":
                program.append(line)
        spans.append(tuple(range(start + 1, len(program) + 1)))
    return CodeSteps("\n".join(program) + "\n", tuple(spans))


@dataclass(frozen=True)
class TestTrace:
    """One test's run: passed or not, and the effects (value reprs) of each step, in order."""

    passed: bool
    error: str | None
    effects: tuple[tuple[str, ...], ...]  # per step
    raised_in: int | None  # the step whose line raised, when one did


@dataclass(frozen=True)
class SolutionTrace:
    load_error: str | None  # the program (or setup) did not even load
    tests: tuple[TestTrace, ...]
    sandbox_status: str


def trace_solution(steps: Sequence[str], spec: OutcomeSpec, sandbox: SandboxConfig = SandboxConfig()) -> SolutionTrace:
    """Run the steps' program on the problem's tests in the sandbox and read each step's effects."""
    if spec.verifier != "code" or not spec.entry_point:
        raise ValueError(f"a code trace needs a code problem with an entry_point, got verifier {spec.verifier!r}")
    program = code_of_steps(steps)
    payload = json.dumps({"code": program.code, "setup": spec.setup, "tests": list(spec.tests),
                          "entry_point": spec.entry_point})
    script = (_TRACER.replace("PAYLOAD", repr(payload)).replace("MAX_EVENTS", str(MAX_EVENTS))
              .replace("MAX_REPR", str(MAX_REPR)))
    result = run_python(script, sandbox)
    last = result.stdout.strip().splitlines()[-1:] if result.stdout.strip() else []
    try:
        out = json.loads(last[0]) if last else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        reason = (result.stderr.strip().splitlines() or [result.status])[-1][:200]
        return SolutionTrace(f"the traced run ended {result.status}: {reason}", (), result.status)
    line_to_step = {line: i for i, span in enumerate(program.lines) for line in span}
    tests = tuple(_effects(t, line_to_step, len(steps)) for t in out["tests"])
    return SolutionTrace(out["load_error"], tests, result.status)


def _effects(record: dict, line_to_step: dict[int, int], n_steps: int) -> TestTrace:
    per_step: list[list[str]] = [[] for _ in range(n_steps)]
    raised_in = None
    events = record["events"]
    for k, (kind, line, state) in enumerate(events):
        step = line_to_step.get(line)
        if step is None:
            continue
        if kind == "exception" and raised_in is None:
            raised_in = step
        if kind == "call":  # the header binds the arguments: its effects are their values
            per_step[step].extend(state.values())
            continue
        if kind == "return":
            per_step[step].append(state["<return>"])
            continue
        after = next((e for e in events[k + 1:] if e[0] != "exception"), None)
        if kind == "line" and after is not None and after[0] == "line":
            per_step[step].extend(v for name, v in after[2].items() if state.get(name) != v)
    return TestTrace(bool(record["passed"]), record.get("error"), tuple(tuple(e) for e in per_step), raised_in)


def effect_overlap(a: Sequence[TestTrace], b: Sequence[TestTrace], i: int, j: int) -> float:
    """Mean over the tests both traced of the multiset overlap of step i's effects (in `a`) and step j's (in `b`)."""
    shares = []
    for ta, tb in zip(a, b):
        ea, eb = ta.effects[i], tb.effects[j]
        if ea or eb:
            shares.append(sum((Counter(ea) & Counter(eb)).values()) / max(len(ea), len(eb)))
    return sum(shares) / len(shares) if shares else 0.0


def split_reference(reference_solution: str) -> list[str]:
    """A code reference's steps: each fenced block as its author split them, or, for one block holding the
    whole program (the code bank's references, a canonical solution), its `code_block` steps (the function's
    header, each top-level statement of its body); each blank-line block when it has no fence."""
    blocks = [m.group(0) for m in _FENCE.finditer(reference_solution)]
    if len(blocks) == 1:
        return split_steps(blocks[0], "code_block") or blocks
    if blocks:
        return blocks
    return [p for p in re.split(r"\n\s*\n", reference_solution.strip("\n")) if p.strip()]


_SYNTAX_LINE = re.compile(r"line (\d+)")


@dataclass(frozen=True)
class CodeVerdict:
    verdict: str  # reproduces | outputs_agree | diverges | raises | no_effect
    good: bool | None
    matched: int  # reference step, -1 for none
    similarity: float


def code_verdicts(steps: Sequence[str], rollout: SolutionTrace, reference: SolutionTrace,
                  reference_steps: int, order_weight: float = 0.1) -> list[CodeVerdict]:
    """Each step's verdict against the reference's trace (the rules of `reference_match`, for code)."""
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415 (kept next to its one use)

    n = len(steps)
    if rollout.load_error is not None or not rollout.tests:
        return _load_failure(steps, rollout)
    passed_by_reference = [t.passed for t in reference.tests]
    diverges = any(ref_ok and not t.passed for t, ref_ok in zip(rollout.tests, passed_by_reference))
    rows = [i for i in range(n) if any(t.effects[i] for t in rollout.tests)]
    cols = [j for j in range(reference_steps) if any(t.effects[j] for t in reference.tests)]
    matched: dict[int, tuple[int, float]] = {}
    if rows and cols:
        sim = [[effect_overlap(rollout.tests, reference.tests, i, j) for j in cols] for i in rows]
        cost = [[-s + (order_weight * abs(a / max(len(rows) - 1, 1) - b / max(len(cols) - 1, 1)) if s > 0 else 0.0)
                 for b, s in enumerate(row)] for a, row in enumerate(sim)]
        for a, b in zip(*linear_sum_assignment(cost)):
            if sim[a][b] > 0:
                matched[rows[a]] = (cols[b], sim[a][b])
    out = []
    for i in range(n):
        j, s = matched.get(i, (-1, 0.0))
        if any(t.raised_in == i and ok for t, ok in zip(rollout.tests, passed_by_reference)):
            out.append(CodeVerdict("raises", False, j, s))
        elif i not in rows:
            out.append(CodeVerdict("no_effect", None, j, s))
        elif all(not (Counter(t.effects[i]) - Counter(e for step in r.effects for e in step))
                 for t, r in zip(rollout.tests, reference.tests)):
            out.append(CodeVerdict("reproduces", True, j, s))
        elif not diverges:
            out.append(CodeVerdict("outputs_agree", True, j, s))
        else:
            out.append(CodeVerdict("diverges", False, j, s))
    return out


def _load_failure(steps: Sequence[str], rollout: SolutionTrace) -> list[CodeVerdict]:
    """The program did not load: the step holding the syntax error's line is bad, the others abstain."""
    program = code_of_steps(steps)
    m = _SYNTAX_LINE.search(rollout.load_error or "")
    line = int(m.group(1)) if m else None
    culprit = next((i for i, span in enumerate(program.lines) if line in span), None)
    return [CodeVerdict("raises", False, -1, 0.0) if i == culprit else CodeVerdict("no_effect", None, -1, 0.0)
            for i in range(len(steps))]
