"""The labeler registry: the one place that says what each labeler is, needs and means.

An explicit dict, no magic registration. Each entry declares:

- `run(inputs: LabelerInputs, config) -> LabelerOutput`: the one signature
  (prm_data/labelers/protocol.py). The entries below are thin adapters over each
  module's own function, so the modules keep their documented signatures;
- `config`: its frozen pydantic config type (`labeling.<name>` in a run config);
- `needs`: the models and state it uses, any of
  `completer` (a Monte Carlo completer and its prefix tree), `prover` (a second
  completer with its own tree: the progress prover), `tree` (it reads and feeds
  a prefix tree, so it runs in the per-shard `expand_trees` stage and its tree
  snapshot is stored), `judges` (the judge panel: probed before any judging);
- `role`: how aggregation reads its labels (prm_data/aggregate.py): `mc`
  (an outcome estimate: Monte Carlo value, search value, advantage), `judge`
  (an LLM verdict or vote share), `tool` (a check that can veto a step);
- `value`: what `StepLabel.value` holds: `probability` (a success rate or vote
  share in [0, 1], fused as a score) or `advantage` (a difference in [-1, 1]:
  its hard label is fused instead).

Everything else (which stage runs a labeler, which clients it gets, which
labels a policy fuses, which configs are refused at load) derives from these
entries. Adding a labeler is one module plus one line here; the name is the
value of `step_labels.labeler` its labels carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from prm_data.labelers import (judge_vote, mc_value, omega_prm, progress, reference_match, rubric, sibling,
                              tool_verify, verpo)
from prm_data.labelers.protocol import LabelerInputs, LabelerOutput

Need = Literal["completer", "prover", "tree", "judges"]
Role = Literal["mc", "judge", "tool"]
ROLES: tuple[Role, ...] = ("mc", "judge", "tool")
# The labeling key holding the judge panel's voting settings (which judges, how many samples each), read by
# every labeler that needs judges (judge_vote itself, rubric): `labeling.judge_vote`.
PANEL = "judge_vote"


@dataclass(frozen=True)
class LabelerSpec:
    """What one labeler is: its function, config type, needs, aggregation role and value kind."""

    run: Callable[[LabelerInputs, Any], LabelerOutput]
    config: type[BaseModel]
    needs: frozenset[str]
    role: Role
    value: Literal["probability", "advantage"] = "probability"

    def __post_init__(self) -> None:
        unknown = set(self.needs) - {"completer", "prover", "tree", "judges"}
        if unknown:
            raise ValueError(f"unknown labeler needs {sorted(unknown)}")
        if "tree" in self.needs and not {"completer", "prover"} & set(self.needs):
            raise ValueError("a tree labeler needs a completer or a prover to expand its tree")

    @property
    def sampler(self) -> str | None:
        """Which completer the labeler samples from: `completer`, `prover` or None."""
        return "prover" if "prover" in self.needs else "completer" if "completer" in self.needs else None


def tree_labeler(function: Callable) -> Callable[[LabelerInputs, Any], LabelerOutput]:
    """Adapter for `function(rollouts, completer, cfg) -> StepLabels` (or a list of `StepLabel`s): the MC modules."""
    def run(inputs: LabelerInputs, cfg) -> LabelerOutput:
        return LabelerOutput(function(inputs.rollouts, inputs.sampler, cfg))
    return run


def _tool_verify(inputs: LabelerInputs, cfg: tool_verify.ToolVerifyConfig) -> LabelerOutput:
    return LabelerOutput(tool_verify.label_tool_verify(inputs.rollouts, cfg, inputs.failures))


def _reference_match(inputs: LabelerInputs, cfg: reference_match.ReferenceMatchConfig) -> LabelerOutput:
    return LabelerOutput(reference_match.label_reference_match(inputs.rollouts, inputs.problems, cfg, inputs.failures))


def _judge_vote(inputs: LabelerInputs, cfg: judge_vote.JudgeVoteConfig) -> LabelerOutput:
    result = judge_vote.judge_solutions(inputs.rollouts, inputs.judges.clients, cfg, inputs.run_id,
                                        failures=inputs.failures)
    return LabelerOutput(result.labels, {"judgments": result.judgments})


def _rubric(inputs: LabelerInputs, cfg: rubric.RubricConfig) -> LabelerOutput:
    """Write reference and contrastive rubrics with the panel's first judge, then grade with the panel."""
    writer, failures = inputs.judges.writer, inputs.failures
    problems = [rubric.RubricProblem(p["problem_id"], p["question"], str(p["answer"]),
                                     p.get("reference_solution") or "") for p in inputs.problems]
    rubrics = rubric.generate_rubrics(problems, writer, cfg, failures)
    rubrics += rubric.generate_contrastive_rubrics(inputs.rollouts, writer, cfg, failures)
    result = rubric.label_with_rubrics(inputs.rollouts, rubrics, inputs.judges.clients, inputs.judges.vote,
                                       inputs.run_id, failures)
    return LabelerOutput(result.labels, {"rubrics": [r.to_row(inputs.run_id) for r in rubrics],
                                         "judgments": result.judgments})


_MC = frozenset({"completer", "tree"})

LABELERS: dict[str, LabelerSpec] = {
    mc_value.NAME: LabelerSpec(tree_labeler(mc_value.label_mc_value), mc_value.MCValueConfig, _MC, "mc"),
    omega_prm.NAME: LabelerSpec(tree_labeler(omega_prm.label_omega_prm), omega_prm.OmegaPRMConfig, _MC, "mc"),
    sibling.NAME: LabelerSpec(tree_labeler(sibling.label_sibling), sibling.SiblingConfig, _MC, "mc", "advantage"),
    progress.NAME: LabelerSpec(tree_labeler(progress.label_progress), progress.ProgressConfig,
                               frozenset({"prover", "tree"}), "mc", "advantage"),
    verpo.NAME: LabelerSpec(tree_labeler(verpo.label_verpo), verpo.VeRPOConfig, _MC, "mc"),
    tool_verify.LABELER: LabelerSpec(_tool_verify, tool_verify.ToolVerifyConfig, frozenset(), "tool"),
    reference_match.NAME: LabelerSpec(_reference_match, reference_match.ReferenceMatchConfig, frozenset(), "tool"),
    judge_vote.LABELER: LabelerSpec(_judge_vote, judge_vote.JudgeVoteConfig, frozenset({"judges"}), "judge"),
    rubric.LABELER: LabelerSpec(_rubric, rubric.RubricConfig, frozenset({"judges"}), "judge"),
}


def spec(name: str) -> LabelerSpec:
    """The registry entry of `name`; KeyError listing the known labelers otherwise."""
    try:
        return LABELERS[name]
    except KeyError:
        raise KeyError(f"unknown labeler {name!r}; known: {sorted(LABELERS)}") from None


def with_role(role: str, names=None) -> list[str]:
    """The labelers (of `names`, default all registered) whose aggregation role is `role`."""
    return [n for n in (LABELERS if names is None else names) if spec(n).role == role]
