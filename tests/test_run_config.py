"""The run config composes its parts once, at load, and refuses what cannot work before any model call.

Specifications:
- `train.options` is a whole TrainConfig (a nightly run sets the learning rate
  and LoRA rank), reading the export folder unless told otherwise;
- `export.options.policy` is the aggregation policy unless set, and a value set
  is kept, through a JSON round trip (the Prefect parameters) too;
- the nightly export is the run's own (`export.scope: run`) unless every run's is
  asked for (`warehouse`), and only the latter may pick a run by id;
- what does not change labels (workers, reports folder, export options) does
  not change the labeling version;
- `prm-data run` refuses an unknown `--task-runner` as a usage error (exit 2),
  and a config whose aggregation cannot use its labelers with the fix, before
  a warehouse is touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.config import RunConfig


def test_a_nightly_run_sets_every_training_option_and_trains_on_its_export():
    cfg = RunConfig.model_validate({"export": {"out_dir": "exports/night"}, "train": {
        "enabled": True, "options": {"model": "some/model", "learning_rate": 3e-5, "lora": True, "lora_r": 64}}})
    assert (cfg.train.options.learning_rate, cfg.train.options.lora_r) == (3e-5, 64)
    assert cfg.train.options.dataset == "exports/night"
    assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValidationError, match="train.enabled needs train.options"):
        RunConfig.model_validate({"train": {"enabled": True}})


def test_the_export_policy_follows_the_aggregation_unless_set_and_is_never_overwritten():
    hybrid = RunConfig.model_validate({"aggregate": {"policy": "hybrid"}})
    assert hybrid.export.options.policy == "hybrid"
    chosen = RunConfig.model_validate({"aggregate": {"policy": "hybrid"},
                                       "export": {"options": {"policy": "consensus"}}})
    assert chosen.export.options.policy == "consensus"
    assert RunConfig.model_validate_json(chosen.model_dump_json()).export.options.policy == "consensus"


def test_the_nightly_export_is_the_runs_own_unless_every_run_is_asked_for():
    assert RunConfig().export.scope == "run"
    picked = RunConfig.model_validate({"export": {"scope": "warehouse", "options": {"run_id": "night-3"}}})
    assert picked.export.options.run_id == "night-3"
    with pytest.raises(ValidationError, match="needs export.scope: warehouse"):
        RunConfig.model_validate({"export": {"options": {"run_id": "night-3"}}})


def test_a_hub_push_needs_its_scope_stated_so_a_default_never_shrinks_the_repo_to_one_night():
    with pytest.raises(ValidationError, match=r"push_to_hub \(me/prm\) needs export.scope stated"):
        RunConfig.model_validate({"export": {"push_to_hub": "me/prm"}})
    for scope in ("run", "warehouse"):
        stated = RunConfig.model_validate({"export": {"push_to_hub": "me/prm", "scope": scope}})
        assert RunConfig.model_validate_json(stated.model_dump_json()).export.scope == scope  # as stored in runs


def test_workers_paths_and_export_options_leave_the_labeling_version_alone():
    base = RunConfig()
    other = RunConfig.model_validate({"max_workers": 7, "reports_dir": "elsewhere", "task_runner": "dask",
                                      "export": {"out_dir": "x", "options": {"policy": "hybrid"}}})
    assert other.labeling_version() == base.labeling_version()
    more_samples = RunConfig.model_validate({"labeling": {"mc_value": {"k": 4}}})
    assert more_samples.labeling_version() != base.labeling_version()


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_unknown_task_runner_is_a_usage_error(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"warehouse": str(tmp_path / "wh")})
    result = CliRunner().invoke(app, ["run", "-c", str(config), "--task-runner", "rayy"])
    assert result.exit_code == 2
    assert "--task-runner 'rayy': choose one of thread, dask, ray" in result.output
    assert not (tmp_path / "wh").exists()


def test_a_policy_that_cannot_use_the_labelers_is_refused_before_any_model_call(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"warehouse": str(tmp_path / "wh"),
                                                 "labeling": {"labelers": ["omega_prm"]}})
    result = CliRunner().invoke(app, ["run", "-c", str(config), "--serial"])
    assert result.exit_code == 2  # a run config that cannot work is a usage error (exit codes in --help)
    assert "aggregate.policy consensus needs labels of role judge (judge_vote, rubric)" in result.output
    assert "Fix: add one to labeling.labelers, or set aggregate.policy to hybrid or mc_only" in result.output
    assert not (tmp_path / "wh").exists()  # nothing was written, nothing was asked
