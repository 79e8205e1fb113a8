"""The run config: one typed pydantic model per run, loadable from YAML.

It composes the frozen config of every component (each lives beside the code
it configures), is shown as the Prefect flow's parameters, is stored with the
run in the `runs` table and with every export. `labeling_version()` hashes the
parts that change labels, so incremental nightly runs know which problems are
already labeled "under the current config".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prm_data.aggregate import AggregateConfig
from prm_data.export import ExportConfig
from prm_data.filters import BalanceConfig, LengthLimits
from prm_data.labelers.judge_probes import JudgeProbeConfig
from prm_data.labelers.judge_vote import JudgeVoteConfig
from prm_data.labelers.mc_value import MCValueConfig
from prm_data.labelers.omega_prm import OmegaPRMConfig
from prm_data.labelers.progress import ProgressConfig
from prm_data.labelers.rubric import RubricConfig
from prm_data.labelers.sandbox import require_isolation
from prm_data.labelers.sibling import SiblingConfig
from prm_data.labelers.tool_verify import ToolVerifyConfig
from prm_data.llm.factory import BackendConfig
from prm_data.rollouts import RolloutConfig
from prm_data.sources import FieldMapping
from prm_data.trees.sampling import CompleterConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid")

MODEL_LABELERS = ("mc_value", "omega_prm", "sibling", "progress")
ALL_LABELERS = (*MODEL_LABELERS, "tool_verify", "judge_vote", "rubric")
# BackendConfig fields that say how a model is reached, not which model answers: not part of a labeling version.
TRANSPORT_FIELDS = ("base_urls", "api_key_env", "timeout_s", "max_retries", "max_batch_retries", "backoff_base_s",
                    "backoff_max_s", "concurrency")


class ProblemsConfig(BaseModel):
    model_config = _FROZEN

    source: str = Field("bank:24:1-2:0", description="Problem source: bank:COUNT[:DIFFICULTY[:SEED]], a "
                        "JSONL/CSV/Parquet path, or hf:NAME (see docs/sources.md).")
    mapping: FieldMapping = Field(default_factory=FieldMapping, description="Column mapping for file/HF sources.")
    limit: int | None = Field(None, ge=1, description="At most this many not-yet-labeled problems per run.")


class LabelingConfig(BaseModel):
    model_config = _FROZEN

    labelers: tuple[str, ...] = Field(("mc_value", "tool_verify", "judge_vote"),
                                      description=f"Labelers to run, any of {ALL_LABELERS}.")
    completer: CompleterConfig = Field(default_factory=CompleterConfig,
                                       description="How Monte Carlo continuations are sampled.")
    mc_value: MCValueConfig = Field(default_factory=MCValueConfig, description="Math-Shepherd MC settings.")
    omega_prm: OmegaPRMConfig = Field(default_factory=OmegaPRMConfig, description="OmegaPRM settings.")
    sibling: SiblingConfig = Field(default_factory=SiblingConfig, description="Shared-prefix sibling settings.")
    progress: ProgressConfig = Field(default_factory=ProgressConfig, description="Progress (advantage) settings.")
    tool_verify: ToolVerifyConfig = Field(default_factory=ToolVerifyConfig, description="Tool verification.")
    judge_vote: JudgeVoteConfig = Field(default_factory=JudgeVoteConfig, description="Judges and voting.")
    rubric: RubricConfig = Field(default_factory=RubricConfig, description="Rubric writing.")
    judge_probes: JudgeProbeConfig = Field(default_factory=JudgeProbeConfig,
                                      description="Judge-hacking probes run before a judge is trusted.")
    check_judges: bool = Field(True, description="Run the judge-hacking probes before judging.")

    @model_validator(mode="after")
    def _known(self):
        unknown = sorted(set(self.labelers) - set(ALL_LABELERS))
        if unknown:
            raise ValueError(f"unknown labelers {unknown}; choose from {ALL_LABELERS}")
        if "tool_verify" in self.labelers and self.tool_verify.run_code:
            require_isolation()  # refuse before any model call, never run code unisolated (issue 12)
        return self

    def tree_labelers(self) -> list[str]:
        """The configured labelers that expand rollout trees with a model (one `expand_trees` task per shard)."""
        return [n for n in self.labelers if n in MODEL_LABELERS]

    def shard_labelers(self) -> list[str]:
        """The other configured labelers (tool_verify, judge_vote, rubric): one task per shard and labeler."""
        return [n for n in self.labelers if n not in MODEL_LABELERS]


class FiltersConfig(BaseModel):
    model_config = _FROZEN

    dedup_rollouts: bool = Field(True, description="Drop exact and normalized duplicate rollouts.")
    drop_unparseable: bool = Field(True, description="Drop rollouts whose final answer cannot be parsed.")
    drop_injection: bool = Field(True, description="Drop rollouts with text aimed at the judges "
                                 "(filters.drop_judge_injection).")
    length: LengthLimits = Field(default_factory=LengthLimits, description="Length limits.")
    balance: BalanceConfig | None = Field(None, description="Class balance per problem; None = off.")


class ExportStageConfig(BaseModel):
    model_config = _FROZEN

    enabled: bool = Field(True, description="Export a training set at the end of the run.")
    out_dir: str = Field("exports/latest", description="Local export folder (save_to_disk + Parquet).")
    push_to_hub: str | None = Field(None, description="Hub dataset repo id to push to; token from HF_TOKEN.")
    private: bool = Field(True, description="Create the Hub repo private.")
    options: ExportConfig = Field(default_factory=ExportConfig, description="Formats, split, policy.")


class TrainStageConfig(BaseModel):
    model_config = _FROZEN

    enabled: bool = Field(False, description="Fine-tune a PRM after export (needs a GPU for real models).")
    model: str = Field("", description="Base model path or id for the PRM.")
    output_dir: str = Field("checkpoints/prm", description="Checkpoint folder.")
    label_mode: Literal["hard", "soft"] = Field("hard", description="Cross-entropy on labels or BCE on values.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; None = one epoch.")
    lora: bool = Field(False, description="Train LoRA adapters only.")


class RunConfig(BaseModel):
    """Everything one run of the pipeline needs. Shown as the nightly flow's parameters."""

    model_config = _FROZEN

    name: str = Field("default", description="A name for runs of this config.")
    warehouse: str = Field("warehouse/data", description="Warehouse root folder.")
    reports_dir: str = Field("reports", description="Where each run's report folder (PNG plots) goes.")
    problems: ProblemsConfig = Field(default_factory=ProblemsConfig, description="Which problems.")
    policy: BackendConfig = Field(default_factory=BackendConfig, description="The policy that writes rollouts.")
    completer: BackendConfig | None = Field(None, description="Monte Carlo completer; None = the policy.")
    prover: BackendConfig | None = Field(None, description="Prover for progress labels; None = the completer.")
    judges: dict[str, BackendConfig] = Field(
        default_factory=lambda: {"judge": BackendConfig(kind="sim", model="sim-judge")},
        description="Judge backends by name; judge_vote.judges refer to these names.")
    rollouts: RolloutConfig = Field(default_factory=RolloutConfig, description="Rollout sampling.")
    labeling: LabelingConfig = Field(default_factory=LabelingConfig, description="Labelers and settings.")
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig, description="Label fusion policy.")
    filters: FiltersConfig = Field(default_factory=FiltersConfig, description="Dataset filters.")
    export: ExportStageConfig = Field(default_factory=ExportStageConfig, description="Export stage.")
    train: TrainStageConfig = Field(default_factory=TrainStageConfig, description="PRM training stage.")
    task_runner: Literal["thread", "dask", "ray"] = Field("thread", description="Prefect task runner.")
    max_workers: int = Field(2, ge=1, description="Concurrent tasks (threads or Dask workers).")
    shard_size: int = Field(16, ge=1, description="Problems per labeling shard (the unit of resumption).")

    @model_validator(mode="after")
    def _judges_exist(self):
        if "judge_vote" in self.labeling.labelers or "rubric" in self.labeling.labelers:
            missing = [j.name for j in self.labeling.judge_vote.judges if j.name not in self.judges]
            if missing:
                raise ValueError(f"judge_vote.judges name {missing}, which are not in `judges` "
                                 f"({sorted(self.judges)})")
        return self

    @property
    def completer_backend(self) -> BackendConfig:
        return self.completer or self.policy

    @property
    def prover_backend(self) -> BackendConfig:
        return self.prover or self.completer_backend

    def labeling_version(self) -> str:
        """Hash of everything that changes labels (not paths, workers, export options, nor where and
        how patiently a model is reached: the same model behind another URL gives the same labels)."""
        relevant = self.model_dump(mode="json", include={
            "problems", "policy", "completer", "prover", "judges", "rollouts", "labeling", "aggregate", "filters"})
        relevant["problems"].pop("limit", None)
        backends = [relevant[r] for r in ("policy", "completer", "prover") if relevant.get(r)]
        for backend in backends + list(relevant["judges"].values()):
            for name in TRANSPORT_FIELDS:
                backend.pop(name, None)
        blob = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a run config must be a YAML mapping")
        return cls.model_validate(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
