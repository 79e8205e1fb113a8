"""Adding a labeler is one function plus one registry entry: nothing else in the pipeline changes.

Specifications:
- a labeler defined in this file (a step-length heuristic, role `judge`, with its
  own config type) registered with one `LABELERS` entry runs in the serial
  pipeline on the synthetic config, its labels are stored under its name with
  its config's values, and consensus fuses them into the final labels;
- its config is read from `labeling.<its name>` and refused when it is wrong;
- a labeler needing a completer and a tree runs in the tree stage and gets a
  `Completer` on the shared prefix tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prm_data.config import RunConfig
from prm_data.labelers.protocol import LabelerInputs, LabelerOutput
from prm_data.labelers.registry import LABELERS, LabelerSpec
from prm_data.pipeline.serial import run_serial
from prm_data.records import StepLabel
from prm_data.warehouse import Warehouse

NAME = "short_steps"


class ShortStepsConfig(BaseModel):
    """A step is good when it has at most `max_words` words (a made-up heuristic, for the test only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_words: int = Field(40, ge=1, description="Longest good step, in words.")


def label_short_steps(inputs: LabelerInputs, cfg: ShortStepsConfig) -> LabelerOutput:
    labels = [StepLabel(r.problem_id, r.rollout_id, i, NAME, "1", float(len(step.split()) <= cfg.max_words),
                        len(step.split()) <= cfg.max_words, 1.0, evidence={"words": len(step.split())})
              for r in inputs.rollouts for i, step in enumerate(r.steps)]
    return LabelerOutput(labels)


def seen_by_tree(inputs: LabelerInputs, cfg: ShortStepsConfig) -> LabelerOutput:
    """A tree labeler that only checks it was given a Completer holding the shard's rollouts."""
    assert inputs.sampler is not None and inputs.sampler.model == "sim-policy"
    inputs.sampler.add_rollouts(inputs.rollouts)
    return LabelerOutput([StepLabel(r.problem_id, r.rollout_id, i, "tree_probe", "1", 1.0, True, 1.0)
                          for r in inputs.rollouts for i in range(len(r.steps))])


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(LABELERS, NAME, LabelerSpec(label_short_steps, ShortStepsConfig, frozenset(), "judge"))
    monkeypatch.setitem(LABELERS, "tree_probe", LabelerSpec(seen_by_tree, ShortStepsConfig,
                                                            frozenset({"completer", "tree"}), "mc"))


def config(root: Path, labelers: list[str], **labeling) -> RunConfig:
    return RunConfig.model_validate({
        "name": "protocol", "warehouse": str(root / "warehouse"), "reports_dir": str(root / "reports"),
        "problems": {"source": "bank:6:2:0"}, "rollouts": {"n": 3},
        "policy": {"kind": "sim", "model": "sim-policy"},
        "labeling": {"labelers": labelers, "mc_value": {"k": 2}, **labeling},
        "aggregate": {"policy": "consensus"}, "export": {"out_dir": str(root / "export")}, "shard_size": 3})


def test_a_labeler_defined_here_runs_end_to_end_and_is_fused(registered, tmp_path):
    cfg = config(tmp_path, ["mc_value", NAME], short_steps={"max_words": 18})
    summary = run_serial(cfg)
    wh = Warehouse(cfg.warehouse)

    ours = wh.rows("SELECT step_index, hard_label, evidence FROM step_labels WHERE labeler = ?", [NAME])
    assert len(ours) == summary["steps"] > 0
    assert {r["hard_label"] for r in ours} == {True, False}  # max_words 18 splits the sim's steps
    kept = wh.rows("SELECT sources FROM final_labels WHERE kept")
    assert kept and all(NAME in r["sources"] or r["sources"][-1] == "propagated" for r in kept)
    dropped = wh.scalar("SELECT count(DISTINCT rollout_id) FROM final_labels WHERE drop_reason = 'consensus' "
                        "AND drop_detail LIKE 'MC first error%'")
    assert dropped > 0  # the short-steps verdicts disagree with MC somewhere: consensus really read them


def test_its_config_is_read_from_labeling_by_name_and_checked(registered, tmp_path):
    assert config(tmp_path, ["mc_value", NAME]).labeling.config_of(NAME) == ShortStepsConfig()
    with pytest.raises(ValidationError, match=f"labeling.{NAME}.max_words: Input should be greater than"):
        config(tmp_path, ["mc_value", NAME], short_steps={"max_words": 0})
    with pytest.raises(ValidationError, match="mc_only never reads the labels of \\['short_steps'\\]"):
        RunConfig.model_validate({"labeling": {"labelers": ["mc_value", NAME]}, "aggregate": {"policy": "mc_only"}})


def test_a_tree_labeler_gets_a_completer_on_the_shared_tree(registered, tmp_path):
    cfg = config(tmp_path, ["tree_probe", NAME])
    assert cfg.labeling.tree_labelers() == ["tree_probe"] and cfg.labeling.shard_labelers() == [NAME]
    run_serial(cfg)
    wh = Warehouse(cfg.warehouse)
    assert wh.scalar("SELECT count(*) FROM step_labels WHERE labeler = 'tree_probe'") > 0
    assert wh.scalar("SELECT count(*) FROM tree_nodes WHERE run_id IS NOT NULL") > 0  # its tree was stored
