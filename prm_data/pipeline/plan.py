"""The pipeline as data: one list of stages that every executor runs the same way.

Each `Stage` says what function it calls, how it fans out (`once`, `per_shard`,
`per_shard_labeler`), which parts of the run config it is given (dotted paths
into `RunConfig`: a stage never sees the rest), which tables it reads and
writes, whether it runs for this config, and its retry and cache policy. The
serial runner (prm_data/pipeline/serial.py) loops over `PLAN`; the Prefect
flow (flows/nightly.py) turns each stage into a task from the same fields.
Both record one `runs.timings` entry per stage that ran, under its name.

    select -> generate -> check_judges -> expand_trees -> label -> aggregate -> export -> train

`check_judges` comes before `expand_trees` so that a judge refused by the
probes stops the run before any Monte Carlo completion is paid for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from prm_data.pipeline.finalize import aggregate_shard, export_stage, train_stage
from prm_data.pipeline.generate import generate_shard
from prm_data.pipeline.label import check_judges_stage, expand_trees_shard, label_shard
from prm_data.pipeline.select import select_problems

FanOut = Literal["once", "per_shard", "per_shard_labeler"]


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline and the policy an executor runs it under."""

    name: str
    function: Callable
    fan_out: FanOut
    configs: tuple[str, ...]  # RunConfig paths passed after the fan-out arguments, in order
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    enabled: Callable = lambda config: True  # (RunConfig) -> whether this config runs the stage
    input: str | None = None  # a `once` stage given this earlier stage's result first
    retries: int = 0
    retry_delays_s: tuple[float, ...] = ()
    cached: bool = True  # executors may skip an item whose (labeling version, run, item) already ran
    labelers: Callable = lambda config: ()  # per_shard_labeler: which labelers, in order

    def sub_configs(self, config) -> tuple:
        return tuple(attrgetter(path)(config) for path in self.configs)

    def items(self, config, shards: list[str]) -> list[tuple]:
        """The fan-out arguments of each invocation, in the order the serial runner takes them."""
        if self.fan_out == "once":
            return [()]
        if self.fan_out == "per_shard":
            return [(s,) for s in shards]
        return [(s, n) for s in shards for n in self.labelers(config)]

    def item_name(self, args: tuple) -> str:
        """The name of one invocation: its task run name and the shard its failure rows are written to."""
        if self.fan_out == "once":
            return self.name
        if self.fan_out == "per_shard":
            return f"{self.name}-{args[0]}"
        return f"{args[1]}-{args[0]}"


MODEL_RETRIES = dict(retries=2, retry_delays_s=(5, 30))

PLAN: tuple[Stage, ...] = (
    Stage("select", select_problems, "once", ("problems", "shard_size"),
          reads=("problems source", "run_problems", "runs"), writes=("problems", "run_problems"),
          retries=1, retry_delays_s=(5,)),
    Stage("generate", generate_shard, "per_shard", ("rollouts",),
          reads=("problems", "run_problems"), writes=("rollouts", "steps", "completions", "failures"),
          **MODEL_RETRIES),
    Stage("check_judges", check_judges_stage, "once", ("labeling",),
          reads=(), writes=("failures", "llm_cache"),
          enabled=lambda c: c.labeling.check_judges and c.labeling.needs("judges"), retries=1, retry_delays_s=(10,)),
    Stage("expand_trees", expand_trees_shard, "per_shard", ("labeling", "rollouts.skip_uniform"),
          reads=("problems", "rollouts", "steps", "tree_nodes"),
          writes=("completions", "tree_nodes", "step_labels", "failures"),
          enabled=lambda c: bool(c.labeling.tree_labelers()), **MODEL_RETRIES),
    Stage("label", label_shard, "per_shard_labeler", ("labeling", "rollouts.skip_uniform"),
          reads=("problems", "rollouts", "steps"), writes=("step_labels", "judgments", "rubrics", "failures"),
          enabled=lambda c: bool(c.labeling.shard_labelers()), labelers=lambda c: c.labeling.shard_labelers(),
          **MODEL_RETRIES),
    Stage("aggregate", aggregate_shard, "per_shard",
          ("aggregate", "filters", "labeling.labelers", "rollouts.skip_uniform"),
          reads=("rollouts", "steps", "step_labels"), writes=("final_labels", "stepwise_rows"), retries=1),
    # export (this run's labels, or every run's: export.scope) and training write a folder that
    # another run, or the other scope, may have replaced since: never cached
    Stage("export", export_stage, "once", ("export",), reads=("final_labels", "stepwise_rows", "runs"),
          writes=("export folder",), retries=2, retry_delays_s=(10, 60), cached=False),
    Stage("train", train_stage, "once", ("train",), reads=("export folder",), writes=("checkpoint",),
          enabled=lambda c: c.train.enabled, input="export", cached=False),
)

STAGES = {s.name: s for s in PLAN}


def stages_for(config) -> Iterator[Stage]:
    """The stages this config runs, in order."""
    return (s for s in PLAN if s.enabled(config))


def call(stage: Stage, scope, args: tuple, config, given=None):
    """Run one invocation of `stage` in `scope` (a StageScope): fan-out args, then its sub-configs."""
    lead = (given,) if stage.input else ()
    return stage.function(scope, *lead, *args, *stage.sub_configs(config))
