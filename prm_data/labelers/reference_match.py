"""Reference-matching step labels: no sampling, no model, zero calls (after MatchTIR's bipartite matching).

MatchTIR (Qu et al., "MatchTIR: Fine-Grained Supervision for Tool-Integrated
Reasoning via Bipartite Matching", arXiv:2601.10712) gives each turn of an agent's
trace its own reward by matching the predicted tool calls to the ground-truth
calls as a bipartite assignment (its hard variant: the Hungarian algorithm). Here
the same idea labels the steps of a solution against the problem's reference
solution: the bank's `reference_solution`, a GSM8K answer with its `<<48/2=24>>`
annotations, any worked solution whose steps state computations.

A step's *computations* are the equalities it states (`a + b = c`, `3 × 4 = 12`,
`\\frac{1}{2} \\cdot 48 = 24`, `<<48/2=24>>`), read by the tool verifier's claim
reader (`tool_verify.claims_in_text`: prose, LaTeX and GSM8K annotations, every
side parsed whole or not at all). Each has the operands written on its
operation side, the value it establishes (the stated result) and whether its
arithmetic holds. The rollout's steps with computations are matched to the
reference's steps with computations by `scipy.optimize.linear_sum_assignment`
on a cost of value agreement (a stated value equal to one the reference step
establishes), operand overlap (shared operands, as multisets) and, as a tie
break only, relative position. A pair that shares nothing is no match.

Rules, applied to each step in order (`verdict` in the evidence):

1. no computation (prose only, "The answer is 12."): abstain (`no_computation`);
2. a computation identical to one of the reference's (same operands, same
   value) is never an arithmetic error: the reference defines the problem's
   operations (the bank's `/` is integer division);
3. any other computation whose arithmetic is exactly wrong: bad (`arithmetic_error`);
4. a computation that uses a value established by an earlier bad step (and not
   a number of the question or of the reference): bad (`carries_error`) — after
   a contradiction, steps that carry the wrong value forward are bad (the
   ProcessBench convention, arXiv:2412.06559: an error propagates until undone);
5. every computation reproduces one of the reference's: it establishes a
   value the reference establishes, either from at least one of the same
   operands (`3 × 24 = 72` reproduces `48 + 24 = 72`) or from operands all
   grounded (numbers of the question, round constants, values of earlier good
   steps: `144 / 2 = 72` after a good `48 × 3 = 144`); `64 + 14 = 78` with 14
   from nowhere does not reproduce `81 - 3 = 78`, a value met by chance: good
   (`reproduces`), matched or not (a restated or reordered computation);
6. a value off the reference that a later step uses, with right arithmetic, to
   reproduce a reference computation: good with low confidence
   (`alternate_route`: the solution took another way to the reference's values);
7. otherwise, if the step is matched to a reference step (it shares its inputs
   but establishes another value): bad (`contradicts_reference`);
8. otherwise (no shared value or operand): bad when the rollout's final answer
   is wrong (`diverges`: it left the reference and never came back), else
   abstain (`off_reference`);
9. the last step of a rollout whose final answer is graded wrong is bad
   whatever rules 1, 5, 6 or 8 said (`wrong_final_answer`: it states that
   answer; a solution that stops short, or that ends in prose, is caught here).

Code problems (`metadata.outcome.verifier == "code"`) are matched by effects
instead (`code_trace`): the rollout's program and the reference's (its
`reference_solution` steps, else the canonical `answer`) run in the sandbox on
the problem's tests under a tracer, each step's effects are the values its
lines create or change (and the value returned), and steps are matched by
effect overlap with the same assignment. A step whose line raises where the
reference passes is bad (`raises`; a syntax error blames the step holding it);
one that runs nothing abstains (`no_effect`); one whose every effect the
reference also establishes on every test is good (`reproduces`); one whose
values differ is good with low confidence when the program passes every test
the reference passes (`outputs_agree`: another route) and bad when the outputs
diverge (`diverges`). A reference that fails its own tests labels nothing and
says why.

Confidences follow the tool verifier's contract with aggregation: only an exact
arithmetic error has confidence 1.0 (the one kind a tool veto acts on); the
reference-based verdicts are interpretations and stay below it.

Inputs: `RolloutSteps` and the shard's `problems` rows (their
`reference_solution`; for code also `metadata.outcome`). A problem without one gets a `failures` row and its
rollouts no labels. Output: a `StepLabels` with value 1 (good) / 0 (bad) / None
(abstain), the matched reference step and the values compared in the evidence,
and zero tokens and calls.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import sympy
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from prm_data.failures import FailureLog
from prm_data.labelers import code_trace
from prm_data.labelers.notation import numbers_in
from prm_data.labelers.sandbox import SandboxConfig
from prm_data.labelers.tool_checks import COMMON_CONSTANTS, compare, show
from prm_data.labelers.tool_verify import claims_in_text
from prm_data.records import JSON, StepLabels
from prm_data.rollouts import RolloutSteps
from prm_data.trees.sampling import labeler_version
from prm_data.verifiers.protocol import OutcomeSpec

NAME = "reference_match"
CODE_VERSION = "v2"  # v2: code programs read across code_block steps, the def line's effects
EVIDENCE = {"verdict": pa.string(), "matched_reference_step": pa.int64(), "reference_step_text": pa.string(),
            "similarity": pa.float64(), "computations": JSON, "reference_values": JSON,
            "effects": JSON, "tests_passed": JSON}  # the last two: code problems only
_CODE_BLOCK = re.compile(r"```.*?```", re.S)
_FINAL_LINE = re.compile(r"^\s*####")  # GSM8K's "#### 72" answer line: no step


class ReferenceMatchConfig(BaseModel):
    """How rollout steps are matched to reference steps, and how sure each verdict is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value_weight: float = Field(2.0, ge=0, description="Similarity of a pair in which the rollout step states a "
                                                       "value the reference step establishes.")
    operand_weight: float = Field(1.0, ge=0, description="Similarity per unit of operand overlap (shared operands "
                                                         "over the larger operand count, as multisets).")
    order_weight: float = Field(0.1, ge=0, description="Cost per unit of relative-position distance: a tie break "
                                                       "between equally similar pairs, never a match by itself.")
    reproduce_from_grounded: bool = Field(
        True, description="A reference value computed from operands that are all grounded (question numbers, round "
                          "constants, values of earlier good steps) reproduces the reference even without a shared "
                          "operand (another route to it); off: only a shared operand counts (fewer values met by "
                          "chance, more alternate routes called contradictions).")
    approx_rel_tol: float = Field(0.01, ge=0, description="Relative tolerance of a computation written with ≈.")
    arithmetic_confidence: float = Field(1.0, ge=0, le=1, description="An exactly wrong computation (the only "
                                         "verdict a tool veto acts on at the default veto confidence 1.0).")
    contradiction_confidence: float = Field(0.9, ge=0, le=1, description="A step that shares a reference step's "
                                            "inputs but establishes another value, or carries an earlier error.")
    divergence_confidence: float = Field(0.7, ge=0, le=1, description="A step off the reference in a rollout "
                                         "whose final answer is wrong.")
    reproduction_confidence: float = Field(0.8, ge=0, le=1, description="A step whose every value the reference "
                                           "establishes (local: says nothing of what it leaves out).")
    alternate_route_confidence: float = Field(0.5, ge=0, le=1, description="A value off the reference that a "
                                              "later step turns into a reference value; for code, a step whose "
                                              "values differ from the reference's in a program that passes every "
                                              "test the reference passes.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Limits of each traced run of a "
                                   "code solution (code problems only; the reference runs once per problem).")


@dataclass(frozen=True)
class Computation:
    """One stated equality: the operands of its operation side, the value it establishes, whether it holds."""

    text: str
    operands: tuple[sympy.Expr, ...]
    value: sympy.Expr
    holds: bool | None  # None: decided only by a tolerance (≈, rounding), not exactly

    @property
    def key(self) -> tuple:
        return tuple(sorted(self.operands, key=sympy.default_sort_key)), self.value

    def to_evidence(self) -> dict:
        return {"claim": self.text, "operands": [show(o) for o in self.operands], "value": show(self.value),
                "holds": self.holds}


def computations(text: str, approx_rel_tol: float = 0.01) -> list[Computation]:
    """The numeric computations `text` states, in order, each once (a GSM8K annotation restates its line)."""
    chains, _ = claims_in_text(_CODE_BLOCK.sub(" ", text))
    out: dict[tuple, Computation] = {}
    for chain, _ in chains:
        sides = chain.sides
        for i in range(len(sides) - 1):
            left, right = sides[i], sides[i + 1]
            if not (left.value.is_number and right.value.is_number) or (left.is_bare and right.is_bare):
                continue
            stated, operation = (left, right) if left.is_bare and not right.is_bare else (right, left)
            ok, exact = compare(operation.value, stated.value, stated.text, chain.approx[i], approx_rel_tol,
                                operation.text)
            claim = f"{left.text} {'≈' if chain.approx[i] else '='} {right.text}"
            # a computation that holds establishes its exact value (`10/3 ≈ 3.33` establishes 10/3, as the
            # reference's `10/3` does); one that does not, the value it claims
            value = operation.value if ok else stated.value
            c = Computation(claim, tuple(operation.operands), value, ok if (ok or exact) else None)
            out.setdefault(c.key, c)
    return list(out.values())


@dataclass(frozen=True)
class ReferenceStep:
    index: int
    text: str
    computations: tuple[Computation, ...]

    @property
    def values(self) -> set:
        return {c.value for c in self.computations}


def reference_steps(reference_solution: str, approx_rel_tol: float = 0.01) -> list[ReferenceStep]:
    """A reference solution's steps (blank-line blocks, else lines; GSM8K's `####` line dropped)."""
    text = reference_solution.strip()
    pieces = re.split(r"\n\s*\n", text) if re.search(r"\n\s*\n", text) else text.splitlines()
    pieces = [p.strip() for p in pieces if p.strip() and not _FINAL_LINE.match(p)]
    return [ReferenceStep(i, p, tuple(computations(p, approx_rel_tol))) for i, p in enumerate(pieces)]


def _overlap(a: Sequence, b: Sequence) -> float:
    if not a or not b:
        return 0.0
    shared = sum((Counter(a) & Counter(b)).values())
    return shared / max(len(a), len(b))


def match_steps(steps: Sequence[Sequence[Computation]], reference: Sequence[ReferenceStep],
                cfg: ReferenceMatchConfig) -> dict[int, tuple[int, float]]:
    """rollout step index -> (reference step index, similarity): the optimal one-to-one assignment."""
    rows = [i for i, comps in enumerate(steps) if comps]
    cols = [j for j, ref in enumerate(reference) if ref.computations]
    if not rows or not cols:
        return {}
    similarity = np.zeros((len(rows), len(cols)))
    cost = np.zeros((len(rows), len(cols)))
    for a, i in enumerate(rows):
        values = {c.value for c in steps[i]}
        operands = [o for c in steps[i] for o in c.operands]
        for b, j in enumerate(cols):
            ref = reference[j]
            s = (cfg.value_weight * bool(values & ref.values)
                 + cfg.operand_weight * _overlap(operands, [o for c in ref.computations for o in c.operands]))
            similarity[a, b] = s
            position = abs(a / max(len(rows) - 1, 1) - b / max(len(cols) - 1, 1))
            cost[a, b] = -s + (cfg.order_weight * position if s > 0 else 0.0)
    picked_rows, picked_cols = linear_sum_assignment(cost)
    return {rows[a]: (cols[b], float(similarity[a, b])) for a, b in zip(picked_rows, picked_cols)
            if similarity[a, b] > 0}


def label_solution(rollout: RolloutSteps, reference: Sequence[ReferenceStep], labels: StepLabels,
                   cfg: ReferenceMatchConfig) -> None:
    """Append one label per step of `rollout`, by the module's rules, against `reference`."""
    steps = [computations(s, cfg.approx_rel_tol) for s in rollout.steps]
    matched = match_steps(steps, reference, cfg)
    ref_values = {v for ref in reference for v in ref.values}
    known = _Reference([c for ref in reference for c in ref.computations], cfg.reproduce_from_grounded)
    question = numbers_in(rollout.question) | {sympy.Integer(n) for n in COMMON_CONSTANTS}
    grounded = question | ref_values  # numbers a carried error is never blamed on
    good_values = set(question)  # operands a computation may reproduce a reference value from
    wrong_values: set = set()
    ref_evidence = [show(v) for v in sorted(ref_values, key=sympy.default_sort_key)]
    for i, comps in enumerate(steps):
        j, sim = matched.get(i, (-1, 0.0))
        verdict, good = _verdict(i, comps, steps, j >= 0, known, grounded, good_values, wrong_values,
                                 rollout.is_correct)
        if i == len(steps) - 1 and rollout.is_correct is False and good is not False:
            verdict, good = "wrong_final_answer", False
        if good is False:
            wrong_values |= {c.value for c in comps if not known.reproduces(c, good_values)}
        elif good:
            good_values |= {c.value for c in comps}
        confidence = {"no_computation": 0.0, "off_reference": 0.0, "arithmetic_error": cfg.arithmetic_confidence,
                      "carries_error": cfg.contradiction_confidence, "reproduces": cfg.reproduction_confidence,
                      "alternate_route": cfg.alternate_route_confidence,
                      "contradicts_reference": cfg.contradiction_confidence,
                      "diverges": cfg.divergence_confidence, "wrong_final_answer": cfg.divergence_confidence}[verdict]
        labels.add(problem_id=rollout.problem_id, rollout_id=rollout.rollout_id, step_index=i,
                   value=None if good is None else float(good), hard_label=good, confidence=confidence,
                   evidence={"verdict": verdict, "matched_reference_step": j,
                             "reference_step_text": reference[j].text if j >= 0 else "", "similarity": sim,
                             "computations": [c.to_evidence() for c in comps], "reference_values": ref_evidence})


class _Reference:
    """The reference's computations, by key and by value."""

    def __init__(self, computations: Sequence[Computation], from_grounded: bool):
        self.from_grounded = from_grounded
        self.keys = {c.key for c in computations}
        self.by_value: dict = {}
        for c in computations:
            self.by_value.setdefault(c.value, []).append(set(c.operands))

    def reproduces(self, c: Computation, grounded: set) -> bool:
        """A reference value from a shared operand or from grounded operands only (or the same computation)."""
        if c.key in self.keys:
            return True
        if c.value not in self.by_value:
            return False
        if self.from_grounded and all(o in grounded for o in c.operands):
            return True
        return any(set(c.operands) & ops for ops in self.by_value[c.value])


def _verdict(i: int, comps: list[Computation], steps: list[list[Computation]], is_matched: bool, known: _Reference,
             grounded: set, good_values: set, wrong_values: set, is_correct: bool | None) -> tuple[str, bool | None]:
    if not comps:
        return "no_computation", None
    if any(c.holds is False and c.key not in known.keys for c in comps):
        return "arithmetic_error", False
    if any(o in wrong_values and o not in grounded for c in comps for o in c.operands):
        return "carries_error", False
    off = [c for c in comps if not known.reproduces(c, good_values)]
    if not off:
        return "reproduces", True
    if all(_leads_back(c.value, steps[i + 1:], known, good_values) for c in off):
        return "alternate_route", True
    if is_matched:
        return "contradicts_reference", False
    if is_correct is False:
        return "diverges", False
    return "off_reference", None


def _leads_back(value: sympy.Expr, later: Sequence[Sequence[Computation]], known: _Reference,
                good_values: set) -> bool:
    """Whether a later computation with right arithmetic uses `value` and reproduces a reference value."""
    grounded = good_values | {value}
    return any(c.holds is True and value in c.operands and known.reproduces(c, grounded)
               for comps in later for c in comps)


def label_reference_match(rollouts: Sequence[RolloutSteps], problems: Sequence[Mapping],
                          cfg: ReferenceMatchConfig = ReferenceMatchConfig(),
                          failures: FailureLog | None = None) -> StepLabels:
    """Label every step of every rollout whose problem has a usable reference; zero model calls."""
    labels = StepLabels(NAME, labeler_version(CODE_VERSION, cfg), EVIDENCE)
    by_id = {p["problem_id"]: p for p in problems}
    references: dict[str, list[ReferenceStep] | _CodeReference | None] = {}
    for r in rollouts:
        if r.problem_id not in references:
            references[r.problem_id] = _reference_of(by_id.get(r.problem_id), r.problem_id, cfg, failures)
        reference = references[r.problem_id]
        if isinstance(reference, _CodeReference):
            label_code_solution(r, reference, labels, cfg)
        elif reference is not None:
            label_solution(r, reference, labels, cfg)
    return labels


@dataclass(frozen=True)
class _CodeReference:
    spec: OutcomeSpec
    steps: tuple[str, ...]
    trace: code_trace.SolutionTrace


def label_code_solution(rollout: RolloutSteps, reference: _CodeReference, labels: StepLabels,
                        cfg: ReferenceMatchConfig) -> None:
    """Label a code rollout's steps by the effects they establish on the problem's tests (code_trace)."""
    trace = code_trace.trace_solution(rollout.steps, reference.spec, cfg.sandbox)
    verdicts = code_trace.code_verdicts(rollout.steps, trace, reference.trace, len(reference.steps),
                                        cfg.order_weight)
    confidence = {"reproduces": cfg.reproduction_confidence, "outputs_agree": cfg.alternate_route_confidence,
                  "diverges": cfg.divergence_confidence, "raises": cfg.contradiction_confidence, "no_effect": 0.0}
    passed = [t.passed for t in trace.tests]
    for i, v in enumerate(verdicts):
        effects = [list(t.effects[i]) for t in trace.tests]
        labels.add(problem_id=rollout.problem_id, rollout_id=rollout.rollout_id, step_index=i,
                   value=None if v.good is None else float(v.good), hard_label=v.good,
                   confidence=confidence[v.verdict],
                   evidence={"verdict": v.verdict, "matched_reference_step": v.matched,
                             "reference_step_text": reference.steps[v.matched] if v.matched >= 0 else "",
                             "similarity": v.similarity, "effects": effects, "tests_passed": passed})


def _reference_of(problem: Mapping | None, problem_id: str, cfg: ReferenceMatchConfig,
                  failures: FailureLog | None) -> list[ReferenceStep] | _CodeReference | None:
    """The problem's reference; None (with a failures row saying why) when there is nothing to match."""
    text = (problem or {}).get("reference_solution") or ""
    reason = None
    if problem is None:
        reason = "the problem row is missing from the shard"
    elif (spec := OutcomeSpec.from_problem(problem)).verifier == "code":
        reference, reason = _code_reference(spec, text or str(problem.get("answer") or ""), cfg)
        if reference is not None:
            return reference
    elif not text.strip():
        reason = "the problem has no reference_solution"
    else:
        steps = reference_steps(text, cfg.approx_rel_tol)
        if any(s.computations for s in steps):
            return steps
        reason = "its reference_solution states no computation this labeler can read"
    if failures is not None:
        failures.record(f"label:{NAME}", f"{reason}: its rollouts are not labeled", item_id=problem_id)
    return None


def _code_reference(spec: OutcomeSpec, text: str, cfg: ReferenceMatchConfig) -> tuple[_CodeReference | None, str]:
    steps = tuple(code_trace.split_reference(text))
    if not steps:
        return None, "the code problem has neither a reference_solution nor a canonical answer"
    if not spec.entry_point or not spec.tests:
        return None, "the code problem names no entry_point or no tests to trace the reference on"
    trace = code_trace.trace_solution(steps, spec, cfg.sandbox)
    if trace.load_error is not None or not all(t.passed for t in trace.tests):
        why = trace.load_error or next(t.error for t in trace.tests if not t.passed)
        return None, f"the reference does not pass its own tests ({why})"
    return _CodeReference(spec, steps, trace), ""
