"""The labeler protocol's records: what every labeler is given and what it gives back.

Every labeler is called the same way (prm_data/labelers/registry.py):

    run(inputs: LabelerInputs, config) -> LabelerOutput

`LabelerInputs` holds the shard's rollouts, each one `RolloutSteps` (a rollout
split into steps: ids, question, steps, gold answer and outcome, the one input
record of every labeler), the shard's problem rows, the failure log, and the
models the labeler declared it needs: a `Completer` (its own prefix tree and
model: the Monte Carlo completer or the progress prover) and/or the judge panel.
`LabelerOutput` holds its labels and any side table rows it produced
(`judgments`, `rubrics`); the pipeline writes them, the labeler does not. The
labels are a `StepLabels` (prm_data/records.py: the labeler's columns, filled
one step at a time and written in bulk) or, slower to write, a list of
`StepLabel`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prm_data.failures import FailureLog
from prm_data.labelers.judge_vote import JudgeVoteConfig
from prm_data.llm.client import LLMClient
from prm_data.records import StepLabel, StepLabels
from prm_data.rollouts import RolloutSteps
from prm_data.trees.sampling import Completer


@dataclass(frozen=True)
class JudgePanel:
    """The judges a run votes with: a client per judge name and the voting settings (`labeling.judge_vote`)."""

    clients: Mapping[str, LLMClient]
    vote: JudgeVoteConfig

    @property
    def writer(self) -> LLMClient:
        """The first judge of the panel (writes rubrics)."""
        return next(iter(self.clients.values()))


@dataclass
class LabelerInputs:
    """One shard's input to one labeler, with the models its registry entry says it needs."""

    run_id: str
    rollouts: Sequence[RolloutSteps]
    problems: Sequence[dict]
    failures: FailureLog
    sampler: Completer | None = None  # needs "completer" or "prover": the Completer whose tree it expands
    judges: JudgePanel | None = None  # needs "judges"


@dataclass
class LabelerOutput:
    """A labeler's step labels plus the side-table rows it produced (table name -> rows)."""

    labels: StepLabels | list[StepLabel]
    tables: dict[str, list[dict]] = field(default_factory=dict)
