"""What the step labelers of this package take as input: one solution, already split.

The tool verifier, the judges and the rubric grader all need the same four
things about a rollout: its ids, the question and its steps. `Solution` is that
record; `solutions_from_rows` builds it from warehouse rows (`problems`,
`rollouts`, `steps`), so a flow passes ids and paths and the labeler reads rows.
The labelers accept anything shaped like it (`SolutionLike`), so the Monte
Carlo labelers' `prm_data.rollouts.RolloutSteps` can be passed as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from prm_data.rollouts import join_rollout_rows


class SolutionLike(Protocol):
    problem_id: str
    rollout_id: str
    question: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Solution:
    problem_id: str
    rollout_id: str
    question: str
    steps: tuple[str, ...]
    answer: str | None = None  # the problem's gold answer, when known
    is_correct: bool | None = None  # final-answer correctness of this rollout, when known

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))


def solutions_from_rows(problems: Iterable[dict], rollouts: Iterable[dict],
                        steps: Iterable[dict]) -> list[Solution]:
    """Join `problems`, `rollouts` and `steps` rows into `Solution`s, in rollout order.

    A rollout whose problem is missing raises KeyError naming both ids: a
    solution without its question cannot be judged, and silently skipping it
    would hide a broken join.
    """
    return [Solution(problem_id=r["problem_id"], rollout_id=r["rollout_id"], question=p["question"],
                     steps=texts, answer=p.get("answer"), is_correct=r.get("is_correct"))
            for p, r, texts in join_rollout_rows(problems, rollouts, steps)]
