"""Rollout generation: N sampled solutions per problem, split into steps and graded.

This is the first stage of every Monte Carlo labeling method: Math-Shepherd
(arXiv 2312.08935) labels the steps of sampled solutions, and OmegaPRM (arXiv
2406.06592) starts its tree from N rollouts per question and keeps only
questions whose rollouts are neither all right nor all wrong (its pre-filter:
such questions give no contrast between good and bad steps).

`generate_rollouts` renders `prompts/solve.v1.jinja`, samples N solutions per
problem with the policy client, splits them into steps, grades each with the
problem's outcome verifier (prm_data/verifiers: its `OutcomeSpec`, by default the
math answer against the gold one through math-verify, never string equality; code
by its unit tests in the sandbox) and returns the rows of `rollouts`, `steps` and `completions` (purpose `rollout`).
Ids are content hashes of the request key, so a rerun produces the same ids.
Failed requests become `failures` rows with a reason, never rows of None.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prm_data.failures import FailureLog
from prm_data.llm.client import LLMClient
from prm_data.llm.types import GenerationRequest
from prm_data.prompts import RenderedPrompt, render
from prm_data.steps import split_steps
from prm_data.trees.prefix_tree import node_id_for, prefix_node_ids
from prm_data.verifiers.protocol import Outcome as VerifierOutcome
from prm_data.verifiers.protocol import OutcomeSpec
from prm_data.verifiers.registry import DEFAULT as DEFAULT_VERIFIERS
from prm_data.verifiers.registry import Verifiers

Outcome = Literal["mixed", "all_correct", "all_incorrect"]


class RolloutConfig(BaseModel):
    """How rollouts are sampled from the policy (N per problem, as in Math-Shepherd/OmegaPRM)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(8, ge=1, description="Rollouts sampled per problem.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature of the policy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    max_tokens: int = Field(1024, ge=1, description="Maximum tokens per rollout.")
    seed: int = Field(0, description="Base seed; with the sample index it keys every rollout.")
    prompt_version: str = Field("solve.v1", description="Prompt template (prompts/<version>.jinja).")
    step_policy: Literal["blank_line", "step_k", "line", "code_block"] = Field(
        "blank_line", description="How a solution is split into steps (prm_data.steps).")
    skip_uniform: bool = Field(
        False, description="OmegaPRM pre-filter: leave problems whose rollouts are all correct or all "
                           "incorrect out of labeling (their rows are still stored, flagged).")
    few_shot: int = Field(0, ge=0, le=4, description="Worked bank examples shown in the prompt (small "
                          "models need them to follow the step format).")
    stop: tuple[str, ...] = Field((), description="Stop strings (e.g. the next few-shot 'Problem:').")


@dataclass(frozen=True)
class RolloutSteps:
    """One rollout split into steps: the one input record of every labeler (prm_data/labelers/registry.py).

    The Monte Carlo labelers need the gold answer and the outcome (`answer`,
    `outcome_spec`, `is_correct`, `score`, `policy_model`); the tool verifier, the judges and the rubric
    grader need only the ids, the question and the steps. Built from warehouse
    rows by `rollouts_from_rows`; `prm_data.labelers.inputs.Solution` is this class.
    """

    problem_id: str
    rollout_id: str
    question: str
    steps: tuple[str, ...]
    answer: str | None = None  # the problem's gold answer, when known
    is_correct: bool | None = None  # final-answer correctness of this rollout, when known
    policy_model: str = ""
    completion_tokens: int = 0
    true_first_error: int | None = None  # known only for the synthetic policy
    outcome_spec: OutcomeSpec | None = None  # how a solution is graded; None = math against `answer`
    score: float | None = None  # the verifier's soft score of this rollout, when known
    tests_passed: tuple[bool, ...] | None = None  # code: each unit test passed or not (dense per-test signal)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))


@dataclass
class RolloutBatch:
    """The rows produced by one `generate_rollouts` call, plus what labeling needs."""

    run_id: str
    policy_model: str
    rollouts: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    completions: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # problem_id -> outcome
    skipped: set[str] = field(default_factory=set)  # problems left out of labeling
    problems: dict[str, dict] = field(default_factory=dict)
    step_policy: str = "blank_line"

    def for_labeling(self) -> list[RolloutSteps]:
        """The rollouts of problems not skipped, as labeler input."""
        keep = [r for r in self.rollouts if r["problem_id"] not in self.skipped]
        return rollouts_from_rows(self.problems.values(), keep, self.steps)

    def write(self, warehouse, shard: str) -> dict[str, object]:
        """Write every non-empty table of the batch as shard `shard`; returns table -> path."""
        out = {}
        for table, rows in (("rollouts", self.rollouts), ("steps", self.steps),
                            ("completions", self.completions), ("failures", self.failures)):
            if rows:
                out[table] = warehouse.write_shard(table, rows, run_id=self.run_id, shard=shard)
        return out


def few_shot_examples(count: int) -> list[dict]:
    """`count` worked examples from a fixed slice of the bank (never the problems being solved)."""
    if count <= 0:
        return []
    from prm_data.sources.bank import generate_bank

    return [{"question": p.question, "solution": p.reference_solution}
            for p in generate_bank(count, seed=90210, difficulty=2, ops="+-", max_operand=12)]


def solve_prompt(version: str, question: str, few_shot: int = 0) -> RenderedPrompt:
    """The solve prompt for a question, with `few_shot` worked examples."""
    return render(version, question=question, examples=few_shot_examples(few_shot))


def rollout_id_for(request_key: str) -> str:
    return "r-" + hashlib.sha256(("rollout:" + request_key).encode()).hexdigest()[:24]


def generate_rollouts(problems: Sequence[dict], client: LLMClient, cfg: RolloutConfig,
                      run_id: str, verifiers: Verifiers | None = None) -> RolloutBatch:
    """Sample `cfg.n` solutions per problem and return their rows.

    `problems` are `problems` rows (at least problem_id, question, answer).
    Every problem is flagged mixed / all_correct / all_incorrect over the
    rollouts it got; with `cfg.skip_uniform` the uniform ones are left out of
    `RolloutBatch.for_labeling()`. A problem whose requests failed gets one
    `failures` row per failed request batch (stage `rollout`). Each problem is
    graded by its verifier in `verifiers` (default: `prm_data.verifiers.registry.DEFAULT`),
    every rollout in one `verify_many`, so code problems run their tests in parallel.
    """
    verifiers = verifiers if verifiers is not None else DEFAULT_VERIFIERS
    failures = FailureLog(run_id)
    batch = RolloutBatch(run_id=run_id, policy_model=client.model, step_policy=cfg.step_policy)
    requests = []
    # A problem its verifier cannot grade (a prose, yes/no or multi-form math gold, stored before validation
    # refused them; code without tests) would grade every rollout "incorrect": it is not sampled, and says why.
    graded, specs = [], {}
    for p in problems:
        try:
            spec = OutcomeSpec.from_problem(p)
            reason = verifiers.ungradeable_reason(spec)
        except (ValueError, TypeError) as exc:  # a malformed metadata.outcome
            reason, spec = f"its outcome spec is malformed: {exc}", None
        if reason is None:
            graded.append(p)
            specs[p["problem_id"]] = spec
        elif spec is not None and spec.verifier == "math":
            failures.record("rollout", f"answer {str(p['answer'])[:80]!r} cannot be graded: {reason}",
                            item_id=p["problem_id"], input=p["question"])
        else:
            failures.record("rollout", f"the problem cannot be graded: {reason}",
                            item_id=p["problem_id"], input=p["question"])
    problems = graded
    for p in problems:
        batch.problems[p["problem_id"]] = p
        prompt = solve_prompt(cfg.prompt_version, p["question"], cfg.few_shot)
        requests.append(GenerationRequest(
            messages=prompt.messages, n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
            max_tokens=cfg.max_tokens, stop=tuple(cfg.stop), seed=cfg.seed, purpose="rollout",
            item_id=p["problem_id"]))
    results = client.generate(requests)
    solutions = []  # (problem, sample index, sample, its text, its steps) of every rollout with text
    for p, result in zip(problems, results):
        pid = p["problem_id"]
        if result.error is not None:
            failures.record("rollout", f"{cfg.n - len(result.samples)} of {cfg.n} rollouts could not "
                                       f"be sampled: {result.error}", item_id=pid, input=p["question"])
        for i, sample in enumerate(result.samples):
            text = sample.text.strip()
            steps = split_steps(text, cfg.step_policy)
            if not steps:
                failures.record("rollout", "the policy returned no solution text",
                                item_id=sample.request_key, input=sample.text)
                continue
            solutions.append((p, i, sample, text, steps))
    graded_outcomes = verifiers.verify_many([(specs[p["problem_id"]], text) for p, _, _, text, _ in solutions])
    outcomes: dict[str, list[bool]] = defaultdict(list)
    pending_rows: list[dict] = []
    for (p, i, sample, text, steps), outcome in zip(solutions, graded_outcomes):
        pid = p["problem_id"]
        root = node_id_for(pid, [])
        correct = outcome.success
        rid = rollout_id_for(sample.request_key)
        tfe = sample.metadata.get("true_first_error")
        row = {
            "rollout_id": rid, "run_id": run_id, "problem_id": pid, "policy_model": client.model,
            "sample_index": i, "text": text, "final_answer": outcome.answer, "answer_status": outcome.status,
            "is_correct": correct, "num_steps": len(steps), "finish_reason": sample.finish_reason,
            "prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.completion_tokens,
            "request_key": sample.request_key,
            "true_first_error": int(tfe) if tfe is not None else None,
            "score": outcome.score, "verifier": outcome.tag, "tests_passed": tests_passed(outcome),
        }
        pending_rows.append(row)
        outcomes[pid].append(correct)
        if outcome.fault:  # the code hung, crashed or hit a limit: kept as a wrong rollout, and said why
            failures.record("rollout", f"{outcome.tag}: {outcome.fault}", item_id=rid, input=text)
        for j, (step, nid) in enumerate(zip(steps, prefix_node_ids(pid, steps))):
            batch.steps.append({"rollout_id": rid, "run_id": run_id, "problem_id": pid,
                                "step_index": j, "text": step, "node_id": nid})
        batch.completions.append({
            "completion_id": rid, "run_id": run_id, "problem_id": pid, "node_id": root,
            "purpose": "rollout", "model": client.model, "prefix_steps": 0, "text": text,
            "final_answer": outcome.answer, "is_correct": correct, "prompt_tokens": sample.prompt_tokens,
            "completion_tokens": sample.completion_tokens, "request_key": sample.request_key,
            "score": outcome.score, "verifier": outcome.tag, "tests_passed": tests_passed(outcome),
        })
    for pid, oks in outcomes.items():
        batch.outcomes[pid] = "all_correct" if all(oks) else "all_incorrect" if not any(oks) else "mixed"
        if cfg.skip_uniform and batch.outcomes[pid] != "mixed":
            batch.skipped.add(pid)
    for row in pending_rows:
        row["problem_outcome"] = batch.outcomes[row["problem_id"]]
        batch.rollouts.append(row)
    batch.failures = failures.rows
    return batch


def join_rollout_rows(problems, rollouts, steps):
    """(problem row, rollout row, its step texts in order) for each rollout, in rollout order.

    A rollout whose problem is missing raises KeyError naming both ids: labeling
    it without its question and gold answer is impossible, and skipping it
    silently would hide a broken join.
    """
    by_problem = {p["problem_id"]: p for p in problems}
    by_rollout: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for s in steps:
        by_rollout[s["rollout_id"]].append((int(s["step_index"]), s["text"]))
    for r in rollouts:
        p = by_problem.get(r["problem_id"])
        if p is None:
            raise KeyError(f"rollout {r['rollout_id']} refers to unknown problem {r['problem_id']}")
        yield p, r, tuple(t for _, t in sorted(by_rollout.get(r["rollout_id"], [])))


def rollouts_from_rows(problems, rollouts, steps) -> list[RolloutSteps]:
    """Join `problems`, `rollouts` and `steps` rows into labeler input, in rollout order."""
    out = []
    for p, r, texts in join_rollout_rows(problems, rollouts, steps):
        correct = r.get("is_correct")
        score = r.get("score")
        if score is None and correct is not None:  # a rollout stored before soft scores: its outcome was 0/1
            score = float(bool(correct))
        out.append(RolloutSteps(
            problem_id=r["problem_id"], rollout_id=r["rollout_id"], question=p["question"], steps=texts,
            answer=None if p.get("answer") is None else str(p["answer"]),
            is_correct=None if correct is None else bool(correct), policy_model=r.get("policy_model") or "",
            completion_tokens=int(r.get("completion_tokens") or 0), true_first_error=r.get("true_first_error"),
            outcome_spec=_outcome_spec(p), score=None if score is None else float(score),
            tests_passed=None if r.get("tests_passed") is None else tuple(bool(t) for t in r["tests_passed"])))
    return out


def tests_passed(outcome: VerifierOutcome) -> list[bool] | None:
    """The `tests_passed` column of a row: per-test results of a code outcome, else None."""
    return [t.passed for t in outcome.tests] if outcome.tests else None


def _outcome_spec(problem: dict) -> OutcomeSpec:
    try:
        return OutcomeSpec.from_problem(problem)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"problem {problem.get('problem_id')}: its metadata.outcome is malformed: {exc}") from None
