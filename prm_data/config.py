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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prm_data.aggregate import AggregateConfig, check_labelers
from prm_data.export_config import ExportConfig
from prm_data.filters import BalanceConfig, LengthLimits
from prm_data.labelers.judge_probes import JudgeProbeConfig
from prm_data.labelers.registry import LABELERS, PANEL, spec
from prm_data.labelers.sandbox import require_isolation
from prm_data.llm.factory import BackendConfig
from prm_data.rollouts import RolloutConfig
from prm_data.sources import FieldMapping
from prm_data.train.config import TrainConfig
from prm_data.trees.sampling import CompleterConfig
from prm_data.verifiers.registry import VerifiersConfig
from prm_data.warehouse_root import parse_root

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# BackendConfig fields that say how a model is reached, not which model answers: not part of a labeling version.
TRANSPORT_FIELDS = ("base_urls", "api_key_env", "timeout_s", "max_retries", "max_batch_retries", "backoff_base_s",
                    "backoff_max_s", "concurrency")


class ProblemsConfig(BaseModel):
    model_config = _FROZEN

    source: str = Field("bank:24:1-2:0", description="Problem source: bank:COUNT[:DIFFICULTY[:SEED]], "
                        "code_bank:COUNT[:BLOCKS[:SEED]], a JSONL/CSV/Parquet path, or hf:NAME (see docs/sources.md).")
    mapping: FieldMapping = Field(default_factory=FieldMapping, description="Column mapping for file/HF sources.")
    limit: int | None = Field(None, ge=1, description="At most this many not-yet-labeled problems per run.")


def field_errors(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """A ValidationError as `path.to.field: problem; ...`, without the values given (a URL with a secret in it
    is never printed back) and without pydantic's links; `prefix` goes before each path."""
    return "; ".join(f"{'.'.join(str(part) for part in (*prefix, *error['loc'])) or 'config'}: {error['msg']}"
                     for error in exc.errors(include_url=False, include_input=False))


class LabelingConfig(BaseModel):
    """The labelers to run and each one's settings, keyed by labeler name (`labeling.<name>`).

    A key that is a registered labeler's name holds that labeler's config
    (its type from prm_data/labelers/registry.py); every configured labeler
    without one gets its defaults, so the dump is complete and hashes stably.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    labelers: tuple[str, ...] = Field(("mc_value", "tool_verify", "judge_vote"),
                                      description="Labelers to run, by registry name (prm_data/labelers/registry.py).")
    completer: CompleterConfig = Field(default_factory=CompleterConfig,
                                       description="How Monte Carlo continuations are sampled.")
    judge_probes: JudgeProbeConfig = Field(default_factory=JudgeProbeConfig,
                                           description="Judge-hacking probes run before a judge is trusted.")
    check_judges: bool = Field(True, description="Run the judge-hacking probes before judging.")

    @model_validator(mode="after")
    def _configs_by_name(self):
        unknown = sorted(set(self.labelers) - set(LABELERS))
        if unknown:
            raise ValueError(f"unknown labelers {unknown}; registered: {sorted(LABELERS)}")
        extra = self.__pydantic_extra__
        for key in extra:
            if key not in LABELERS:
                raise ValueError(f"labeling.{key} is neither a setting nor a registered labeler "
                                 f"({sorted(LABELERS)})")
        wanted = list(self.labelers) + ([PANEL] if any("judges" in spec(n).needs for n in self.labelers) else [])
        for name in dict.fromkeys([*extra, *wanted]):
            value = extra.get(name)
            kind = spec(name).config
            try:
                extra[name] = value if isinstance(value, kind) else kind.model_validate(value or {})
            except ValidationError as exc:  # named by its path under labeling, as a field of this model would be
                raise ValueError(field_errors(exc, ("labeling", name))) from None
        if "tool_verify" in self.labelers and self.config_of("tool_verify").run_code:
            require_isolation()  # refuse before any model call, never run code unisolated (issue 12)
        return self

    def config_of(self, name: str) -> BaseModel:
        """The settings of labeler `name` (its registry config type)."""
        return self.__pydantic_extra__[name] if name in self.__pydantic_extra__ else spec(name).config()

    def tree_labelers(self) -> list[str]:
        """The configured labelers that expand prefix trees (run together in one `expand_trees` task per shard)."""
        return [n for n in self.labelers if "tree" in spec(n).needs]

    def shard_labelers(self) -> list[str]:
        """The other configured labelers: one `label` task per shard and labeler."""
        return [n for n in self.labelers if "tree" not in spec(n).needs]

    def needs(self, need: str) -> bool:
        """Whether some configured labeler needs `need` (completer, prover, tree, judges)."""
        return any(need in spec(n).needs for n in self.labelers)


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
    scope: Literal["run", "warehouse"] = Field("run", description=(
        "What the run exports: `run`, this run's final labels, read from its own shards (what it "
        "costs does not grow with the runs before it); `warehouse`, every run's (the greatest run_id "
        "wins where runs overlap), which reads the whole warehouse every night: its cost grows with "
        "the warehouse (docs/warehouse.md, issue 21). `prm-data export` exports every run either way."))
    out_dir: str = Field("exports/latest", description="Local export folder (save_to_disk + Parquet).")
    push_to_hub: str | None = Field(None, description="Hub dataset repo id to push to; token from HF_TOKEN.")
    private: bool = Field(True, description="Create the Hub repo private.")
    options: ExportConfig = Field(default_factory=ExportConfig, description="Formats, split, policy.")

    @model_validator(mode="after")
    def _one_run_or_every_run(self):
        if self.scope == "run" and self.options.run_id is not None:
            raise ValueError("export.options.run_id picks a run out of the whole warehouse: it needs "
                             "export.scope: warehouse (scope `run` exports the run itself)")
        if self.push_to_hub and "scope" not in self.model_fields_set:
            # a push replaces the repo's dataset: with the default scope each night's push would drop
            # every earlier night from the Hub, so the choice is the user's to state
            raise ValueError(f"export.push_to_hub ({self.push_to_hub}) needs export.scope stated: `warehouse` "
                             "pushes every run's labels (the repo holds the whole dataset; the export reads "
                             "the whole warehouse every night), `run` pushes this run's only (each push "
                             "replaces the repo's dataset with the newest night)")
        return self


class TrainStageConfig(BaseModel):
    model_config = _FROZEN

    enabled: bool = Field(False, description="Fine-tune a PRM after export (needs a GPU for real models).")
    options: TrainConfig | None = Field(
        None, description="Every training setting (prm_data/train/config.py: model, learning rate, LoRA rank, "
                          "...); `dataset` defaults to export.out_dir.")

    @model_validator(mode="after")
    def _options_when_enabled(self):
        if self.enabled and self.options is None:
            raise ValueError("train.enabled needs train.options (at least `model`)")
        return self


class RunConfig(BaseModel):
    """Everything one run of the pipeline needs. Shown as the nightly flow's parameters."""

    model_config = _FROZEN

    name: str = Field("default", description="A name for runs of this config.")
    warehouse: str = Field("warehouse/data", description=(
        "Warehouse root: a local folder or a file:// URL (object-store URLs are refused until supported)."))
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
    verifiers: VerifiersConfig = Field(default_factory=VerifiersConfig, description="Outcome verifiers' "
                                       "settings (code: the sandbox limits of unit-test runs; docs/verifiers.md).")
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig, description="Label fusion policy.")
    filters: FiltersConfig = Field(default_factory=FiltersConfig, description="Dataset filters.")
    export: ExportStageConfig = Field(default_factory=ExportStageConfig, description="Export stage.")
    train: TrainStageConfig = Field(default_factory=TrainStageConfig, description="PRM training stage.")
    task_runner: Literal["thread", "dask", "ray"] = Field("thread", description="Prefect task runner.")
    max_workers: int = Field(2, ge=1, description="Concurrent tasks (threads or Dask workers).")
    shard_size: int = Field(16, ge=1, description="Problems per labeling shard (the unit of resumption).")

    @field_validator("warehouse")
    @classmethod
    def _known_warehouse(cls, root: str) -> str:
        parse_root(root)  # refuses hdfs://, abfss://, ... (any scheme but file://, s3://, gs://, az://) at load
        return root

    @model_validator(mode="before")
    @classmethod
    def _compose(cls, data):
        """Fill what one part of the config takes from another, once, at load (never overwritten later):
        the export's policy is the aggregation policy, training reads the export folder."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        aggregate = data.get("aggregate") or {}
        policy = aggregate.policy if isinstance(aggregate, AggregateConfig) else aggregate.get("policy")
        export = data.get("export")
        if isinstance(export, dict):
            options = export.get("options") or {}
            if isinstance(options, dict) and "policy" not in options:
                export = {**export, "options": {**options, "policy": policy or "consensus"}}
            data["export"] = export
        elif export is None and policy is not None:
            data["export"] = {"options": {"policy": policy}}
        train = data.get("train")
        if isinstance(train, dict) and isinstance(train.get("options"), dict) and "dataset" not in train["options"]:
            out_dir = (export or {}).get("out_dir", ExportStageConfig.model_fields["out_dir"].default) \
                if isinstance(export, dict) or export is None else export.out_dir
            data["train"] = {**train, "options": {**train["options"], "dataset": out_dir}}
        return data

    @model_validator(mode="after")
    def _wiring(self):
        """Refuse, before any model call, what cannot work: judges that are not configured, an
        aggregation policy that cannot use exactly the configured labelers."""
        if self.labeling.needs("judges"):
            missing = [j.name for j in self.labeling.config_of(PANEL).judges if j.name not in self.judges]
            if missing:
                raise ValueError(f"{PANEL}.judges name {missing}, which are not in `judges` "
                                 f"({sorted(self.judges)})")
        check_labelers(self.aggregate, self.labeling.labelers)
        return self

    @property
    def completer_backend(self) -> BackendConfig:
        return self.completer or self.policy

    @property
    def prover_backend(self) -> BackendConfig:
        return self.prover or self.completer_backend

    def models(self):
        """The run's model backends by role, for its run context (prm_data/pipeline/context.py)."""
        from prm_data.pipeline.context import Models

        return Models(self.policy, self.completer_backend, self.prover_backend, dict(self.judges))

    def labeling_version(self) -> str:
        """Hash of everything that changes labels (not paths, workers, export options, nor where and
        how patiently a model is reached: the same model behind another URL gives the same labels)."""
        relevant = self.model_dump(mode="json", include={
            "problems", "policy", "completer", "prover", "judges", "rollouts", "labeling", "aggregate", "filters"})
        relevant["problems"].pop("limit", None)
        verifiers = self.verifiers.model_dump(mode="json")
        verifiers["code"].pop("max_parallel", None)  # how many run at once never changes an outcome
        if verifiers != VerifiersConfig().model_dump(mode="json", exclude={"code": {"max_parallel"}}):
            relevant["verifiers"] = verifiers  # only when set: the versions of earlier configs stay as they were
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
