"""The run summary and report say whether the labels are about the steps or about the completer.

Specifications:
- every run's summary carries the label-quality figures of its kept final
  labels (first-step bad share, tool contradictions labeled good, good share),
  recomputed here from the warehouse with plain SQL;
- every run's summary carries each labeler's agreement with exact arithmetic on
  the steps tool verification fully checks, the markdown summary shows it, and
  the report draws it;
- a completer as strong as the policy raises no warning, and a warning of the
  check (tests/test_sanity.py makes one with a hopeless completer) is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prm_data.config import RunConfig
from prm_data.pipeline.serial import run_serial
from prm_data.pipeline.summary import summary_markdown
from prm_data.warehouse import Warehouse

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def sim_config(root: Path, completer: dict | None = None) -> RunConfig:
    data = RunConfig.from_yaml(REPO / "configs" / "sim.yaml").model_dump(mode="json")
    data.update(warehouse=str(root / "warehouse"), reports_dir=str(root / "reports"))
    data["export"]["enabled"] = False
    data["problems"]["source"] = "bank:12:4-6:3"  # long enough that a weak completer rarely finishes
    if completer is not None:
        data["completer"] = completer
    return RunConfig.model_validate(data)


@pytest.fixture(scope="module")
def strong_run(tmp_path_factory):
    config = sim_config(tmp_path_factory.mktemp("strong"))
    return config, run_serial(config)


def test_the_summary_carries_label_quality_recounted_from_the_warehouse(strong_run):
    config, summary = strong_run
    wh = Warehouse(config.warehouse)
    run, policy = summary["run_id"], config.aggregate.policy
    kept = f"FROM final_labels WHERE run_id = '{run}' AND kept AND policy = '{policy}'"
    first = wh.rows(f"SELECT count(*) AS n, count(*) FILTER (WHERE NOT label) AS bad {kept} AND step_index = 0")[0]
    good = wh.scalar(f"SELECT avg(CASE WHEN label THEN 1.0 ELSE 0.0 END) {kept}")
    q = summary["quality"]
    assert q["kept_rollouts"] == first["n"] > 0
    assert q["first_step_bad"] == first["bad"]
    assert q["good_share"] == pytest.approx(float(good), abs=1e-4)
    vetoed_good = wh.scalar(
        "SELECT count(*) FROM step_labels t JOIN final_labels f USING (run_id, rollout_id, step_index) "
        f"WHERE t.run_id = '{run}' AND t.labeler = 'tool_verify' AND t.hard_label = false AND f.kept "
        f"AND f.policy = '{policy}' AND f.label")
    assert q["tool_contradicted_labeled_good"] == vetoed_good


def test_the_summary_and_report_show_each_labeler_against_exact_arithmetic(strong_run):
    config, summary = strong_run
    sanity = summary["sanity"]
    assert sanity["fully_checked_steps"] > 0
    names = {r["labeler"] for r in sanity["labelers"]}
    assert "mc_value" in names and "tool_verify" not in names
    text = summary_markdown(summary)
    assert "labeler vs exact arithmetic" in text and "label quality (kept final labels)" in text
    assert any(p.endswith("agreement_with_arithmetic.png") and Path(p).stat().st_size > 0
               for p in summary["report"])


def test_a_strong_completer_raises_no_warning_and_a_warning_reaches_the_markdown(strong_run):
    _, summary = strong_run
    assert not [w for w in summary["sanity"]["warnings"] if w.startswith("mc_value")]
    warned = dict(summary, sanity=dict(summary["sanity"], warnings=["mc_value disagrees with exact arithmetic"]))
    assert "Warning: mc_value disagrees with exact arithmetic" in summary_markdown(warned)


def test_the_summary_counts_the_rollouts_of_problems_all_right_or_all_wrong(strong_run):
    config, summary = strong_run
    wh = Warehouse(config.warehouse)
    outcome = lambda o: wh.scalar(  # noqa: E731
        "SELECT count(*) FROM rollouts WHERE run_id = ? AND problem_outcome = ?", [summary["run_id"], o])
    uniform = summary["uniform"]
    assert (uniform["all_correct"], uniform["all_incorrect"]) == (outcome("all_correct"), outcome("all_incorrect"))
    assert uniform["skipped"] is config.rollouts.skip_uniform
    line = f"{uniform['all_correct']} / {uniform['all_incorrect']} |"
    assert "| rollouts of problems every / no rollout solved" in summary_markdown(summary)
    assert line in summary_markdown(summary)
    assert "(not labeled: rollouts.skip_uniform)" in summary_markdown(dict(summary, uniform={**uniform, "skipped": True}))
