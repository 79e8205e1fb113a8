"""The explicit map from labeler name to its function and config class.

No magic registration: to add a labeler, import its module here and add ONE
line to `LABELERS` (name -> `Labeler(function, config class)`). The name is the
value of `step_labels.labeler` that the function writes. Each function takes
its inputs, the model access it needs and an instance of its config, and
returns `list[StepLabel]` (prm_data/records.py); see each module's docstring
for its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import BaseModel

from prm_data.labelers import mc_value, omega_prm, progress, sibling
from prm_data.labelers import judge_vote, rubric, tool_verify


class Labeler(NamedTuple):
    function: Callable[..., list]
    config: type[BaseModel]


LABELERS: dict[str, Labeler] = {
    # Monte Carlo labelers: fn(rollouts: list[RolloutSteps], completer: Completer, cfg) -> list[StepLabel]
    mc_value.NAME: Labeler(mc_value.label_mc_value, mc_value.MCValueConfig),
    omega_prm.NAME: Labeler(omega_prm.label_omega_prm, omega_prm.OmegaPRMConfig),
    sibling.NAME: Labeler(sibling.label_sibling, sibling.SiblingConfig),
    progress.NAME: Labeler(progress.label_progress, progress.ProgressConfig),  # completer = the prover
    # Tool labeler, no model calls: fn(solutions: list[SolutionLike], cfg, failures=None) -> list[StepLabel]
    tool_verify.LABELER: Labeler(tool_verify.label_tool_verify, tool_verify.ToolVerifyConfig),
    # Judges: fn(solutions, clients: {judge name: LLMClient}, cfg, run_id) -> JudgeVoteResult (.labels, .judgments)
    judge_vote.LABELER: Labeler(judge_vote.judge_solutions, judge_vote.JudgeVoteConfig),
    # fn(solutions, rubrics: list[Rubric], clients, cfg: JudgeVoteConfig, run_id) -> JudgeVoteResult
    rubric.LABELER: Labeler(rubric.label_with_rubrics, judge_vote.JudgeVoteConfig),
}
