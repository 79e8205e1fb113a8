"""Synthetic solutions with known truth, for measuring labelers (tests, benchmarks/judging.py).

The synthetic policy (prm_data/llm/sim.py) writes bank-problem solutions and
reports the true first error of each; `error_kind` recovers which kind of
error it injected at that step (wrong arithmetic, wrong operand, or a wrongly
copied previous result) from the problem's true chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from prm_data.labelers.inputs import Solution
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend, parse_equation, split_blank_lines
from prm_data.llm.types import GenerationRequest, Message
from prm_data.rollouts import RolloutSteps
from prm_data.sources.bank import BankProblem, apply_op, generate_bank, parse_question


@dataclass(frozen=True)
class SimRollout:
    solution: Solution
    true_first_error: int  # -1 = no error

    def step_is_good(self, i: int) -> bool:
        return self.true_first_error == -1 or i < self.true_first_error

    def as_rollout_steps(self) -> RolloutSteps:
        s = self.solution
        return RolloutSteps(problem_id=s.problem_id, rollout_id=s.rollout_id, question=s.question,
                            answer=s.answer, steps=s.steps, is_correct=bool(s.is_correct),
                            policy_model="sim-policy", true_first_error=self.true_first_error)


def sim_rollouts(count: int, per_problem: int, error_rate: float, seed: int = 0,
                 difficulty: tuple[int, int] = (3, 5), backend: SimBackend | None = None,
                 ops: str | None = None) -> list[SimRollout]:
    """`per_problem` synthetic solutions for each of `count` bank problems, with their truth.

    `backend` sets the policy's other assumptions (e.g. `cancel_rate`); its `error_rate` is used as given.
    `ops` limits the bank's operations (e.g. "+-*": no integer division, whose floor maps some wrong
    values back onto the right one).
    """
    problems = generate_bank(count, seed=seed, difficulty=difficulty, **({"ops": ops} if ops else {}))
    client = LLMClient(backend or SimBackend(model="sim-policy", error_rate=error_rate))
    requests = [GenerationRequest(messages=(Message("user", p.question),), n=per_problem, seed=seed)
                for p in problems]
    out = []
    for p, result in zip(problems, client.generate(requests)):
        if result.error is not None:
            raise RuntimeError(f"the synthetic policy failed: {result.error}")
        for i, sample in enumerate(result.samples):
            steps = tuple(split_blank_lines(sample.text))
            out.append(SimRollout(
                Solution(p.problem_id, f"{p.problem_id}-r{i}", p.question, steps, str(p.answer),
                         is_correct=sample.metadata["answer"] == p.answer),
                sample.metadata["true_first_error"]))
    return out


def error_kind(problem: BankProblem, steps: tuple[str, ...], index: int) -> str:
    """arithmetic | operand | copy | other: what is wrong with step `index` (the first error)."""
    eq = parse_equation(steps[index])
    if eq is None or index >= len(problem.ops):
        return "other"
    a, op, b, c = eq
    if a != problem.values()[index]:
        return "copy"
    if b != problem.ops[index].operand:
        return "operand"
    return "arithmetic" if c != apply_op(a, op, b) else "other"


def problem_of(solution: Solution) -> BankProblem:
    p = parse_question(solution.question)
    if p is None:
        raise ValueError(f"not a bank question: {solution.question[:80]!r}")
    return p
