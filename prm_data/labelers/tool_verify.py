"""Tool verification: check what each step claims with tools, not with a model — precise first.

After GroundedPRM (Zhang et al., 2025, arXiv:2510.14942), which validates every
intermediate step with an external math tool and lets that execution-grounded
signal override noisy Monte Carlo feedback, and Themis (Li et al., "Tool-Augmented
Reward Modeling", ICLR 2024, arXiv:2310.01045), which gives a reward model a
calculator and a code interpreter.

Claims are read from prose, markdown and LaTeX (`prm_data.labelers.notation`,
`arith`, `latex_claims`); a claim is checked only when every side of it is parsed
whole — a side that is not understood (`f(z)`, `2bcd8`, `x mod 11`, an ellipsis,
two operands side by side) breaks the chain and is never trimmed to a part that
parses. Per step, these checks run:

- **arithmetic**: neighbouring sides of every chain (`70+99+70=239`,
  `\\frac{1}{2} \\cdot 4 = 2`, `\\binom{8}{3} = 56`, `\\sqrt{9} = 3`, `10/3 ≈ 3.33`)
  are compared exactly in sympy (written decimals may be rounded or truncated to
  the digits written; `≈` allows `approx_rel_tol`);
- **identity**: `x^2 + 2x + 1 = (x+1)^2` holds for all x;
- **substitution**: a value a step states (`x = 5`) is put back into the
  equations of the question and of earlier steps, and into the step's later
  chains. Values are scoped (`step_scope`): a value a step tries, supposes, lists
  among several or names in one case holds in that step only, and nothing is
  ever substituted into such a step, so an equation being tested or refuted
  ("Now try y = 1", "For d=2, ... = 61 with no solution") is never "contradicted";
- **carried values**: a number that comes from nowhere and is a near miss (off
  by one or two, one digit changed) of the previous step's result is a copying
  error — never while the solution tries candidates;
- **code** (when `run_code`): fenced code runs in the sandbox and the number the
  step states after it must match what the code printed.

Verdict per step: `contradicted` (hard_label False, value 0), `verified` (at least
one claim checked and all hold: hard_label True, value 1 — a local verdict) or
`not_checkable` (hard_label None). **Contract with aggregation**: a contradiction
has `confidence == 1.0` only when it is an exact, fully parsed arithmetic
contradiction (no substituted value, no `≈`, no rounding question) in a step that
neither announces a refutation nor works modulo something; every other
contradiction (substitution, `≈`, carried value, code output) has confidence
below 1.0, and `hybrid`'s veto and `propagate_errors` act only at 1.0. The
evidence lists every check with the parsed claim (`claim`), the values compared
and, for substitutions, the values put in, so a user can audit each verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import sympy
from pydantic import BaseModel, ConfigDict, Field

from prm_data.failures import FailureLog
from prm_data.labelers.arith import ArithError, Chain, chains_in_line
from prm_data.labelers.inputs import SolutionLike as Solution
from prm_data.labelers.latex_claims import formula_chains, split_math
from prm_data.labelers.notation import calculator_annotations, normalize_math, numbers_in, word_numbers
from prm_data.labelers.sandbox import SandboxConfig
from prm_data.labelers.step_scope import StepScope, scope_of
from prm_data.labelers.tool_checks import check_code, check_grounding, compare, show
from prm_data.records import JSON, StepLabel, StepLabels

LABELER = "tool_verify"
VERSION = "2"
# `checks`: one record per check, whose fields depend on the check kind (prm_data/labelers/tool_checks.py)
EVIDENCE = {"verdict": pa.string(), "checks": JSON}

_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


class ToolVerifyConfig(BaseModel):
    """Which claims to check and how strictly. Defaults check everything but code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    check_arithmetic: bool = Field(True, description="Check every fully parsed equality chain with sympy.")
    check_substitution: bool = Field(
        True, description="Substitute a stated value (`x = 5`) back into equations of the question and of earlier "
                          "steps; never into a step that tries, supposes, lists or refutes values.")
    check_carried_values: bool = Field(
        True, description="Flag numbers that are near misses of the previous step's result (copying errors); "
                          "silent once a solution tries candidates.")
    check_question_values: bool = Field(
        False, description="Flag numbers (>= 10) that are near misses of a question number and appear nowhere "
                           "before. Off by default: legitimate derived numbers trip it too often in real text.")
    approx_rel_tol: float = Field(0.01, ge=0, description="Relative tolerance for claims written with ≈.")
    run_code: bool = Field(False, description="Run fenced code blocks of a step in the sandbox (GroundedPRM/Themis tools).")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Limits for code execution.")
    contradicted_confidence: float = Field(
        1.0, ge=0, le=1, description="Confidence of an exact, fully parsed arithmetic contradiction (the only kind "
                                     "hybrid's veto and propagate_errors act on when it is 1.0).")
    inferred_confidence: float = Field(
        0.9, lt=1, ge=0, description="Confidence of a contradiction that rests on an interpretation: a substituted "
                                     "value, a claim written with ≈, a number read after a code block.")
    heuristic_confidence: float = Field(
        0.8, lt=1, ge=0, description="Confidence of a contradiction found by the carried/question value checks.")
    verified_confidence: float = Field(
        0.5, ge=0, le=1, description="Confidence of a verified step: local checks say nothing about earlier errors.")


@dataclass
class _Context:
    """What is known before the current step: grounded numbers, established equations, scoped values."""

    question_numbers: set
    grounded: set
    equations: list = field(default_factory=list)  # (lhs, rhs, claim text, source)
    assignments: dict = field(default_factory=dict)  # symbol -> value, from plain steps, until a scope ends
    previous_result: sympy.Expr | None = None
    tried_candidates: bool = False  # once a solution tries values, the typo check stays silent


def verify_solution(solution: Solution, config: ToolVerifyConfig = ToolVerifyConfig(),
                    failures: FailureLog | None = None) -> StepLabels:
    """One `StepLabel` per step of `solution` (labeler `tool_verify`)."""
    qnums = numbers_in(solution.question)
    ctx = _Context(question_numbers=qnums, grounded=set(qnums))
    # A question that offers alternatives ("2d + 3 = 61 or 3d + 52 = 61") or conditions ("if ...") states
    # equations a value need not satisfy: they can confirm a value, never refute it.
    question_scope = scope_of(solution.question)
    source = "question (alternatives)" if question_scope.local else "question"
    for chain, _ in claims_in_text(solution.question)[0]:
        _remember_equations(chain, ctx, source)
    labels = StepLabels(LABELER, VERSION, EVIDENCE)
    for index, step in enumerate(solution.steps):
        checks = _check_step(step, index, ctx, config, solution, failures)
        _label(labels, solution, index, checks, config)
    return labels


def label_tool_verify(solutions: Sequence[Solution], config: ToolVerifyConfig = ToolVerifyConfig(),
                      failures: FailureLog | None = None) -> StepLabels:
    """Tool-verify every step of every solution; no model calls, so tokens and calls are 0."""
    out = StepLabels(LABELER, VERSION, EVIDENCE)
    for s in solutions:
        out.extend(verify_solution(s, config, failures))
    return out


# ------------------------------------------------------------------- claims
def claims_in_text(text: str) -> tuple[list[tuple[Chain, bool]], list[dict]]:
    """(chain, from LaTeX) for every fully parsed chain of `text` (prose, LaTeX, GSM8K `<<a*b=c>>`
    annotations), and the LaTeX sides the parsers disputed. Also read by `reference_match`."""
    text, annotations = calculator_annotations(text)
    chains: list[tuple[Chain, bool]] = []
    disputed: list[dict] = []
    for is_formula, piece in split_math(text):
        if is_formula:
            found, lost = formula_chains(piece)
            chains.extend((c, True) for c in found)
            disputed.extend(lost)
        else:
            for line in normalize_math(piece).splitlines():
                chains.extend((c, False) for c in _safe_line_chains(line))
    for note in annotations:  # GSM8K calculator annotations are claims too
        chains.extend((c, False) for c in _safe_line_chains(normalize_math(note)))
    return chains, disputed


def _safe_line_chains(line: str) -> list[Chain]:
    try:
        return chains_in_line(line)
    except (ArithError, RecursionError, ValueError, TypeError):
        return []


# ------------------------------------------------------------------- checking
def _check_step(step: str, index: int, ctx: _Context, config: ToolVerifyConfig,
                solution: Solution, failures: FailureLog | None) -> list[dict]:
    checks: list[dict] = []
    if config.run_code:
        checks.extend(check_code(step, config, solution, index, failures, LABELER, _CODE_BLOCK))
    text = _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", step))
    scope = scope_of(text)
    if scope.resets or scope.local:
        ctx.assignments.clear()
    ctx.tried_candidates |= scope.trial
    chains, disputed = claims_in_text(text)
    if disputed:
        checks.append({"check": "parsers_disagree", "sides": disputed, "ok": None})
    known = dict(ctx.assignments) if not scope.local else {}
    stated = _stated_values(chains)
    step_results: set = word_numbers(text)  # "7 days in a week, so 7 x 4": the step's words ground 7
    last_result = None
    for chain, _ in chains:
        values = [_subs(s.value, known) for s in chain.sides]
        substituted = any(v != s.value for v, s in zip(values, chain.sides))
        pairs = [i for i in range(len(values) - 1)
                 if values[i].is_number and values[i + 1].is_number
                 and not (chain.sides[i].is_bare and chain.sides[i + 1].is_bare)]
        if pairs:
            if (config.check_carried_values or config.check_question_values) and not scope.local \
                    and not ctx.tried_candidates:
                checks.extend(check_grounding(chain, index, ctx, step_results, config))
            if config.check_arithmetic:
                checks.extend(_check_arithmetic(chain, values, pairs, substituted, scope, config))
            numbers = [v for v in values if v.is_number]
            last_result = numbers[-1]
            step_results.update(numbers)
        symbol = _assigned_symbol(chain)
        if symbol is not None:
            value = chain.sides[0].value if chain.sides[-1].value == symbol else chain.sides[-1].value
            step_results.add(value)
            last_result = value
            if not scope.local and stated.get(symbol) == 1:
                known[symbol] = value  # later chains of this plain step use it
        elif not pairs and any(not v.is_number for v in values):
            checks.extend(_check_identity_or_remember(chain, values, substituted, scope, ctx, index))
    if config.check_substitution and not scope.trial:
        checks.extend(_check_substitution(chains, ctx, scope, f"step {index}"))
    if not scope.local:
        ctx.assignments.update({k: v for k, v in known.items()})
    ctx.grounded |= numbers_in(text) | step_results
    if last_result is not None:
        ctx.previous_result = last_result
    return checks


def _subs(value: sympy.Expr, assignments: dict) -> sympy.Expr:
    if not assignments or value.is_number:
        return value
    return value.subs(assignments)


def _assigned_symbol(chain: Chain) -> sympy.Symbol | None:
    """`x = 5`, `x = 3 + 2 = 5` or `5 = x`: a bare variable on one end, numbers everywhere else."""
    first, last = chain.sides[0], chain.sides[-1]
    if first.is_bare and isinstance(first.value, sympy.Symbol) and all(s.value.is_number for s in chain.sides[1:]):
        return first.value
    if len(chain.sides) == 2 and last.is_bare and isinstance(last.value, sympy.Symbol) and first.value.is_number:
        return last.value
    return None


def _stated_values(chains: list[tuple[Chain, bool]]) -> dict:
    """How many values the step states for each variable (two or more: alternatives, none holds alone)."""
    count: dict = {}
    for chain, _ in chains:
        symbol = _assigned_symbol(chain)
        if symbol is not None:
            count[symbol] = count.get(symbol, 0) + 1
    return count


def _remember_equations(chain: Chain, ctx: _Context, source: str) -> None:
    for left, right in zip(chain.sides, chain.sides[1:]):
        if (left.value.free_symbols or right.value.free_symbols) and _assigned_symbol(
                Chain((left, right), (False,))) is None:
            ctx.equations.append((left.value, right.value, f"{left.text} = {right.text}", source))


def _check_identity_or_remember(chain: Chain, values: list, substituted: bool, scope: StepScope,
                                ctx: _Context, index: int) -> list[dict]:
    out = []
    if len(chain.sides) == 2 and not any(s.is_bare for s in chain.sides) and not substituted:
        try:
            holds = sympy.expand(values[0] - values[1]) == 0
        except (TypeError, ValueError):
            holds = False
        if holds:
            return [{"check": "identity", "claim": chain.text, "ok": True}]
    if len(chain.sides) == 2 and not substituted and not scope.trial:
        out.extend(_equivalent_to_earlier(chain, ctx))
    if not scope.local and not scope.refutes and not substituted:
        _remember_equations(chain, ctx, f"step {index}")
    return out


def _equivalent_to_earlier(chain: Chain, ctx: _Context) -> list[dict]:
    """`4b = 24` after `b + 3b = 24`, `3s + 5 = 2s + 10` after `3s + 5 = 2(s + 5)`: an equation that is a
    nonzero constant multiple of an established one follows from it. Only ever verifies: an equation
    that is not a multiple of an earlier one is usually a new fact, not an error."""
    left, right = chain.sides
    mine = left.value - right.value
    if not mine.free_symbols or sympy.count_ops(mine) > 40:
        return []
    for lhs, rhs, text, source in reversed(ctx.equations):
        theirs = lhs - rhs
        if text == chain.text:
            continue  # restated, not derived
        if theirs.free_symbols != mine.free_symbols or sympy.count_ops(theirs) > 40:
            continue
        try:
            ratio = sympy.cancel(mine / theirs)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if ratio.is_number and ratio != 0 and ratio.is_finite:
            return [{"check": "equivalent_equation", "claim": chain.text, "follows_from": text, "source": source,
                     "factor": show(ratio), "ok": True}]
    return []


def _check_arithmetic(chain: Chain, values: list, pairs: list[int], substituted: bool, scope: StepScope,
                      config: ToolVerifyConfig) -> list[dict]:
    """Each numeric neighbour pair (never two bare numbers: "50 = 10" can be prose, a unit conversion)."""
    out = []
    for i in pairs:
        left, right = chain.sides[i], chain.sides[i + 1]
        written = left if (left.is_bare and not right.is_bare) else right  # "12 = 3 * 4": the claim is written first
        computed, claimed = (values[i + 1], values[i]) if written is left else (values[i], values[i + 1])
        other = right if written is left else left
        ok, exact = compare(computed, claimed, written.text, chain.approx[i], config.approx_rel_tol, other.text)
        check = {"check": "arithmetic", "claim": f"{left.text} = {right.text}" if not chain.approx[i]
                 else f"{left.text} ≈ {right.text}", "computed": show(computed), "claimed": show(claimed), "ok": ok}
        if substituted:
            check["substituted"] = True
            exact = False
        if ok is False and (scope.refutes or scope.modular):
            check.update(ok=None, reason="the step refutes or works modulo something: not asserted")
        elif ok is False:
            check["exact"] = exact
        out.append(check)
    return out


def _check_substitution(chains: list[tuple[Chain, bool]], ctx: _Context, scope: StepScope,
                        this_step: str) -> list[dict]:
    """Values the step states, put back into equations established before it (never into its own)."""
    stated: dict = {}
    for chain, _ in chains:
        symbol = _assigned_symbol(chain)
        if symbol is not None:
            value = chain.sides[0].value if chain.sides[-1].value == symbol else chain.sides[-1].value
            stated.setdefault(symbol, []).append(value)
    out = []
    for symbol, options in stated.items():
        for value in options:  # alternatives ("x = 2 or x = 3") are checked one at a time
            values = {s: v[0] for s, v in stated.items() if len(v) == 1 and s != symbol}
            if not scope.local:
                values = {**ctx.assignments, **values}
            values[symbol] = value
            for lhs, rhs, text, source in ctx.equations:
                if source == this_step or symbol not in (lhs.free_symbols | rhs.free_symbols):
                    continue
                lv, rv = lhs.subs(values), rhs.subs(values)
                if not (lv.is_number and rv.is_number):
                    continue
                holds = bool(sympy.simplify(lv - rv) == 0)
                out.append({"check": "substitution", "claim": text, "source": source,
                            "values": {str(k): show(v) for k, v in values.items() if k in lhs.free_symbols
                                       | rhs.free_symbols},
                            "computed": show(lv), "claimed": show(rv),
                            "ok": holds if holds or not (scope.refutes or source.endswith("(alternatives)"))
                            else None})
    return out


# --------------------------------------------------------------------- verdict
def _label(out: StepLabels, solution: Solution, index: int, checks: list[dict], config: ToolVerifyConfig) -> None:
    failed = [c for c in checks if c.get("ok") is False]
    passed = [c for c in checks if c.get("ok") is True]
    if failed:
        exact = any(c["check"] == "arithmetic" and c.get("exact") for c in failed)
        inferred = any(c["check"] in ("arithmetic", "substitution", "code") for c in failed)
        confidence = (config.contradicted_confidence if exact else
                      config.inferred_confidence if inferred else config.heuristic_confidence)
        verdict, value, hard = "contradicted", 0.0, False
    elif passed:
        verdict, value, hard, confidence = "verified", 1.0, True, config.verified_confidence
    else:
        verdict, value, hard, confidence = "not_checkable", None, None, 0.0
    out.add(problem_id=solution.problem_id, rollout_id=solution.rollout_id, step_index=index, value=value,
            hard_label=hard, confidence=confidence, evidence={"verdict": verdict, "checks": checks})


def verdict_of(label: StepLabel) -> str:
    """The verdict (`verified` | `contradicted` | `not_checkable`) stored in a tool label."""
    return label.evidence.get("verdict", "not_checkable")


__all__ = ["LABELER", "VERSION", "ToolVerifyConfig", "claims_in_text", "label_tool_verify", "verdict_of",
           "verify_solution", "SandboxConfig"]
