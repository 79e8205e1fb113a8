"""Tool verification: check what each step claims with tools, not with a model.

After GroundedPRM (Zhang et al., 2025, arXiv:2510.14942), which validates every
intermediate step with an external math tool and lets that execution-grounded
signal override noisy Monte Carlo feedback, and Themis (Li et al., "Tool-Augmented
Reward Modeling", ICLR 2024, arXiv:2310.01045), which gives a reward model a
calculator and a code interpreter.

Per step, three kinds of claims are checked:

- **arithmetic**: every equality chain (`70+99+70=239`, `3 x 4 = 12`,
  `\\frac{1}{2} \\cdot 4 = 2`, `10/3 ≈ 3.33`) is parsed with the safe parser of
  `prm_data.labelers.arith` (never `eval`) and compared exactly in sympy, with
  rounding tolerance only to the precision the step itself wrote;
- **substitution**: `x = 5` is substituted back into every equation in `x`
  stated in the question or an earlier step (`2x + 3 = 13`);
- **carried values**: a number a step computes with must come from the
  question, an earlier step or an earlier result of the same step; a number
  that does not, and is a near miss (off by one or two, one digit changed) of
  the previous step's result or of a question number, is a copying error;
- **code** (when `run_code`): fenced code blocks run in the sandbox
  (`prm_data.labelers.sandbox`) and the number the step states after the block
  must match the number the code printed.

Verdict per step: `contradicted` (some claim is false: hard_label False, value
0, whatever Monte Carlo says), `verified` (at least one claim checked, all
hold: hard_label True, value 1 — a *local* verdict: a step that computes
correctly from an earlier wrong result is verified) or `not_checkable`
(hard_label None, the labeler abstains). The evidence lists every check with
its expression, computed value and claimed value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy
from pydantic import BaseModel, ConfigDict, Field

from prm_data.failures import FailureLog
from prm_data.labelers.arith import ArithError, Chain, extract_chains, numbers_in, word_numbers
from prm_data.labelers.inputs import SolutionLike as Solution
from prm_data.labelers.sandbox import SandboxConfig, run_python
from prm_data.records import StepLabel

LABELER = "tool_verify"
VERSION = "1"

_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_STATED_AFTER_CODE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# Round numbers solutions use without any word naming them; others need a word ("week" -> 7).
COMMON_CONSTANTS = frozenset({0, 1, 10, 100, 1000})


class ToolVerifyConfig(BaseModel):
    """Which claims to check and how strictly. Defaults check everything but code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    check_arithmetic: bool = Field(True, description="Check every equality chain with sympy.")
    check_substitution: bool = Field(
        True, description="Substitute `x = value` back into equations in x from the question and earlier steps.")
    check_carried_values: bool = Field(
        True, description="Flag numbers that are near misses of the previous step's result (copying errors).")
    check_question_values: bool = Field(
        False, description="Flag numbers (>= 10) that are near misses of a question number and appear nowhere "
                           "before. Off by default: legitimate derived numbers trip it too often in real text.")
    approx_rel_tol: float = Field(0.01, ge=0, description="Relative tolerance for claims written with ≈.")
    run_code: bool = Field(False, description="Run fenced code blocks of a step in the sandbox (GroundedPRM/Themis tools).")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Limits for code execution.")
    contradicted_confidence: float = Field(
        1.0, ge=0, le=1, description="Confidence of a contradiction found by exact computation.")
    heuristic_confidence: float = Field(
        0.8, ge=0, le=1, description="Confidence of a contradiction found by the carried/question value checks.")
    verified_confidence: float = Field(
        0.5, ge=0, le=1, description="Confidence of a verified step: local checks say nothing about earlier errors.")


@dataclass
class _Context:
    """What is known before the current step: grounded numbers, equations, assignments."""

    question_numbers: set
    grounded: set
    equations: list = field(default_factory=list)  # (lhs, rhs, source text)
    assignments: dict = field(default_factory=dict)
    previous_result: sympy.Rational | None = None


def verify_solution(solution: Solution, config: ToolVerifyConfig = ToolVerifyConfig(),
                    failures: FailureLog | None = None) -> list[StepLabel]:
    """One `StepLabel` per step of `solution` (labeler `tool_verify`)."""
    qnums = numbers_in(solution.question)
    ctx = _Context(question_numbers=qnums, grounded=set(qnums))
    for chain in _safe_chains(solution.question):
        _remember_equation(chain, ctx, "question")
    labels = []
    for index, step in enumerate(solution.steps):
        checks = _check_step(step, index, ctx, config, solution, failures)
        labels.append(_label(solution, index, checks, config))
    return labels


def label_tool_verify(solutions: Sequence[Solution], config: ToolVerifyConfig = ToolVerifyConfig(),
                      failures: FailureLog | None = None) -> list[StepLabel]:
    """Tool-verify every step of every solution; no model calls, so tokens and calls are 0."""
    out: list[StepLabel] = []
    for s in solutions:
        out.extend(verify_solution(s, config, failures))
    return out


# ------------------------------------------------------------------- checking
def _safe_chains(text: str) -> list[Chain]:
    try:
        return extract_chains(text)
    except (ArithError, RecursionError, ValueError, TypeError):
        return []


def _check_step(step: str, index: int, ctx: _Context, config: ToolVerifyConfig,
                solution: Solution, failures: FailureLog | None) -> list[dict]:
    checks: list[dict] = []
    if config.run_code:
        checks.extend(_check_code(step, config, solution, index, failures))
    text = _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", step))
    step_results: set = word_numbers(text)  # "7 days in a week, so 7 x 4": the step's words ground 7
    last_result = None
    for chain in _safe_chains(text):
        values = [_subs(s.value, ctx.assignments) for s in chain.sides]
        numeric_pairs = [i for i in range(len(values) - 1)
                         if values[i].is_number and values[i + 1].is_number
                         and not (chain.sides[i].is_bare and chain.sides[i + 1].is_bare)]
        if numeric_pairs:
            if config.check_carried_values or config.check_question_values:
                checks.extend(_check_grounding(chain, index, ctx, step_results, config))
            if config.check_arithmetic:
                checks.extend(_check_arithmetic(chain, values, numeric_pairs, config))
            numbers = [v for v in values if v.is_number]
            last_result = numbers[-1]
            step_results.update(numbers)
        symbol = _assigned_symbol(chain, values)
        if symbol is not None:
            ctx.assignments[symbol] = values[-1]
            step_results.add(values[-1])
            last_result = values[-1]
            if config.check_substitution:
                checks.extend(_check_substitution(symbol, ctx))
        elif not numeric_pairs and any(not v.is_number for v in values):
            lhs, rhs = values[0], values[-1]
            if len(chain.sides) == 2 and not all(s.is_bare for s in chain.sides) \
                    and sympy.expand(lhs - rhs) == 0:
                checks.append({"check": "identity", "expression": chain.text, "ok": True})
            else:
                _remember_equation(chain, ctx, f"step {index}")
    ctx.grounded |= numbers_in(text) | step_results
    if last_result is not None:
        ctx.previous_result = last_result
    return checks


def _subs(value: sympy.Expr, assignments: dict) -> sympy.Expr:
    if not assignments or value.is_number:
        return value
    return value.subs(assignments)


def _is_assignment(chain: Chain) -> bool:
    """`x = 5` (or `x = 3 + 2 = 5`): a bare variable first, numbers after it."""
    first = chain.sides[0]
    return first.is_bare and isinstance(first.value, sympy.Symbol) and all(
        s.value.is_number for s in chain.sides[1:])


def _assigned_symbol(chain: Chain, values: list) -> sympy.Symbol | None:
    if _is_assignment(chain):
        return chain.sides[0].value
    last = chain.sides[-1]  # "5 = x"
    if len(chain.sides) == 2 and last.is_bare and isinstance(last.value, sympy.Symbol) \
            and chain.sides[0].value.is_number:
        values[-1] = values[0]
        return last.value
    return None


def _remember_equation(chain: Chain, ctx: _Context, source: str) -> None:
    for left, right in zip(chain.sides, chain.sides[1:]):
        if left.value.free_symbols or right.value.free_symbols:
            if not _is_assignment(Chain((left, right), (False,))):
                ctx.equations.append((left.value, right.value, f"{left.text} = {right.text}", source))


def _check_arithmetic(chain: Chain, values: list, pairs: list[int], config: ToolVerifyConfig) -> list[dict]:
    """Each numeric neighbour pair (never two bare numbers: "50 = 10" left after trimming prose)."""
    out = []
    for i in pairs:
        left, right = chain.sides[i], chain.sides[i + 1]
        computed, claimed = values[i], values[i + 1]
        if right.is_bare or not left.is_bare:
            tol = _tolerance(right, computed, chain.approx[i], config)
            ok = abs(computed - claimed) <= tol
        else:  # "12 = 3 * 4": the claimed value is written first
            tol = _tolerance(left, claimed, chain.approx[i], config)
            ok = abs(computed - claimed) <= tol
        out.append({"check": "arithmetic", "expression": f"{left.text} = {right.text}",
                    "computed": _show(computed), "claimed": _show(claimed), "ok": bool(ok)})
    return out


def _tolerance(written, exact, approx: bool, config: ToolVerifyConfig):
    """Zero for exact claims; half a unit of the last written decimal; relative for ≈."""
    decimals = 0
    for tok in re.findall(r"\d+\.(\d+)", written.text.replace(" ", "")):
        decimals = max(decimals, len(tok))
    tol = sympy.Rational(1, 2 * 10 ** decimals) if decimals else sympy.Integer(0)
    if approx:
        tol = max(tol, sympy.Rational(str(config.approx_rel_tol)) * abs(exact), sympy.Rational(1, 2))
    return tol


def _check_substitution(symbol: sympy.Symbol, ctx: _Context) -> list[dict]:
    out = []
    for lhs, rhs, text, source in ctx.equations:
        if symbol not in (lhs.free_symbols | rhs.free_symbols):
            continue
        lv, rv = lhs.subs(ctx.assignments), rhs.subs(ctx.assignments)
        if not (lv.is_number and rv.is_number):
            continue
        out.append({"check": "substitution", "expression": text, "source": source,
                    "assignment": {str(k): _show(v) for k, v in ctx.assignments.items()},
                    "computed": _show(lv), "claimed": _show(rv), "ok": bool(lv == rv)})
    return out


def _check_grounding(chain: Chain, index: int, ctx: _Context, step_results: set,
                     config: ToolVerifyConfig) -> list[dict]:
    """Inputs of the computation must come from somewhere; near misses are copying errors."""
    inputs = next((s for s in chain.sides if not s.is_bare), None)
    if inputs is None:
        return []
    out = []
    for n in inputs.numbers:
        if n in ctx.grounded or n in step_results or not n.is_integer:
            continue
        prev = ctx.previous_result
        if (config.check_carried_values and index > 0 and prev is not None
                and int(n) not in COMMON_CONSTANTS and _near_miss(n, prev)):
            out.append({"check": "carried_value", "expression": chain.text, "used": _show(n),
                        "expected": _show(prev), "source": f"result of step {index - 1}", "ok": False})
            continue
        if config.check_question_values and int(n) not in COMMON_CONSTANTS and abs(n) >= 10:
            # small numbers are near some question number by chance far too often to tell anything
            near = sorted(q for q in ctx.question_numbers if abs(q) >= 10 and _near_miss(n, q, strict=True))
            if near:
                out.append({"check": "question_value", "expression": chain.text, "used": _show(n),
                            "expected": _show(near[0]), "source": "question", "ok": False})
                continue
        out.append({"check": "ungrounded_number", "expression": chain.text, "used": _show(n), "ok": None})
    return out


def _near_miss(used, expected, strict: bool = False) -> bool:
    """A typo-like miss: off by one or two, two adjacent digits swapped, or one digit changed,
    added or dropped. `strict` (for comparisons against every question number, where chance
    matches are many) allows digit changes only in numbers of three or more digits."""
    if not (getattr(expected, "is_integer", False) and used.is_integer) or used == expected:
        return False
    if abs(used - expected) <= 2:
        return True
    a, b = str(abs(int(used))), str(abs(int(expected)))
    min_len = 3 if strict else 1
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]:
            return True
        return len(diff) == 1 and len(a) >= min_len
    short, long_ = sorted((a, b), key=len)
    if len(long_) - len(short) != 1 or len(short) < min_len:
        return False
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _check_code(step: str, config: ToolVerifyConfig, solution: Solution, index: int,
                failures: FailureLog | None) -> list[dict]:
    out = []
    for m in _CODE_BLOCK.finditer(step):
        code = m.group(1)
        after = _STATED_AFTER_CODE.search(step, m.end())
        result = run_python(code, config.sandbox)
        printed = _STATED_AFTER_CODE.findall(result.stdout)
        check = {"check": "code", "expression": code[:500], "status": result.status,
                 "stdout": result.stdout[-500:], "ok": None}
        if result.status != "ok":
            check["stderr"] = result.stderr[-500:]
            if failures is not None:
                failures.record(f"label:{LABELER}", f"code block {result.status}",
                                item_id=f"{solution.rollout_id}:{index}", input=code)
        elif printed and after is not None:
            computed = sympy.Rational(printed[-1].replace(",", ""))
            claimed = sympy.Rational(after.group().replace(",", ""))
            check.update(computed=_show(computed), claimed=_show(claimed), ok=bool(computed == claimed))
        out.append(check)
    return out


def _show(value) -> str:
    value = sympy.nsimplify(value) if isinstance(value, sympy.Float) else value
    if isinstance(value, sympy.Rational) and not value.is_integer:
        return f"{value} (≈{float(value):.6g})"
    return str(value)


# --------------------------------------------------------------------- verdict
def _label(solution: Solution, index: int, checks: list[dict], config: ToolVerifyConfig) -> StepLabel:
    failed = [c for c in checks if c.get("ok") is False]
    passed = [c for c in checks if c.get("ok") is True]
    if failed:
        exact = any(c["check"] in ("arithmetic", "substitution", "code") for c in failed)
        verdict, value, hard = "contradicted", 0.0, False
        confidence = config.contradicted_confidence if exact else config.heuristic_confidence
    elif passed:
        verdict, value, hard, confidence = "verified", 1.0, True, config.verified_confidence
    else:
        verdict, value, hard, confidence = "not_checkable", None, None, 0.0
    return StepLabel(problem_id=solution.problem_id, rollout_id=solution.rollout_id, step_index=index,
                     labeler=LABELER, labeler_version=VERSION, value=value, hard_label=hard,
                     confidence=confidence, evidence={"verdict": verdict, "checks": checks})


def verdict_of(label: StepLabel) -> str:
    """The verdict (`verified` | `contradicted` | `not_checkable`) stored in a tool label."""
    return label.evidence.get("verdict", "not_checkable")
