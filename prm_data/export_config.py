"""What an export is asked to do (`ExportConfig`) and what it gives back, without importing `datasets`.

`prm_data.config` loads a run's `export` section through this module, so a CLI start
does not pay for importing `datasets` (about a second) before anything is exported;
`prm_data.export` builds the formats and re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prm_data.exports.options import TRAINER_FORMATS, TrainerExportOptions
from prm_data.steps import POLICIES

DEFAULT_FORMATS = ("stepwise", "pairs", "processbench")
FORMATS = (*DEFAULT_FORMATS, *TRAINER_FORMATS)  # the trainer formats are built when asked for
PROVENANCE_FILE = "export.json"  # beside the card: export config, runs with their configs, counts, costs
SPLITS = ("train", "test")
DEFAULT_FORMAT = "stepwise"


class ExportConfig(BaseModel):
    """What to export and how to split it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str | None = Field(None, description="Which `final_labels.policy` to export (consensus, hybrid, "
                               "mc_only, judge_only, ...); None = the policy of the newest run that wrote "
                               "final labels. A policy with no final labels is refused, naming those present.")
    run_id: str | None = Field(None, description="Export only final labels from this run; None = every run "
                               "(the greatest run_id wins where runs overlap).")
    formats: tuple[str, ...] = Field(DEFAULT_FORMATS, description="Which formats to build: stepwise, pairs, "
                                     "processbench (the default), rl_rewards, openrlhf, verifier_sft.")
    test_fraction: float = Field(0.1, ge=0.0, le=1.0, description="Share of problems in the test split.")
    split_salt: str = Field("prm-data-split-v1", description="Salt of the problem-id hash that decides the "
                            "split; change it to draw a different split.")
    pair_margin: float = Field(0.5, gt=0.0, le=1.0, description="Minimum MC-value gap between the chosen and "
                               "the rejected sibling step (Step-DPO keeps clearly better steps only).")
    pair_min_samples: int = Field(4, ge=1, description="Minimum rollouts through each sibling for its MC "
                                  "value to count (Math-Shepherd uses N=8 completions per step).")
    max_pairs_per_node: int = Field(4, ge=1, description="At most this many pairs per parent node, widest "
                                    "margin first, so bushy nodes do not dominate.")
    step_policy: str = Field("blank_line", description="Step separator policy used to write a pair's shared "
                             "prefix into its prompt (see prm_data/steps.py).")
    license: str = Field("unknown", description="License id of the dataset card (a Hub license id, e.g. "
                         "apache-2.0, cc-by-4.0; `unknown` until you set it: the policy model's terms may "
                         "bind what it wrote).")
    language: tuple[str, ...] = Field(("en",), description="Languages of the problems and steps (card metadata).")
    task_categories: tuple[str, ...] = Field(("token-classification", "text-generation"), description=(
        "Hub task categories of the card: a PRM is a token classifier over step separators; the pairs "
        "serve preference tuning of a generator."))
    pretty_name: str = Field("prm-data process supervision", description="Title of the dataset card.")
    trainers: TrainerExportOptions = Field(
        default_factory=TrainerExportOptions,
        description="Options of the rl_rewards, openrlhf and verifier_sft formats (prm_data/exports/options.py).")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(FORMATS))
        if unknown or not v:
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}; unknown: {unknown}")
        return tuple(f for f in FORMATS if f in v)

    @field_validator("step_policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"step_policy must be one of {POLICIES}")
        return v


@dataclass(frozen=True)
class ExportResult:
    path: Path | None  # local folder, when written
    repo_id: str | None  # Hub repo, when pushed
    counts: dict[str, dict[str, int]]  # format -> split -> rows
    policy: str | None = None  # the final_labels.policy exported


class HubPushError(RuntimeError):
    """Pushing to the Hub failed; the message never contains the token."""


class EmptyExport(ValueError):
    """No format has a single row: nothing is written or pushed."""


class UnknownPolicy(EmptyExport):
    """The policy asked for has no final labels (a typo, or another config's policy): nothing is written."""
