"""The warehouse benchmark (benchmarks/warehouse_scale.py) in small: it runs, its synthetic
campaign is in the real schema, and the standard queries it times return the right answers.

The 10M-row run is outside the suite (`python benchmarks/warehouse_scale.py`); its numbers are
in benchmarks/results/warehouse_scale.json and docs/reliability.md.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import warehouse_scale  # noqa: E402

from prm_data.warehouse import Warehouse  # noqa: E402

ROWS = 60_000


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    results = warehouse_scale.run(rows=ROWS, shard_rows=8_000, repeats=1, root=str(root / "wh"), out_dir=root)
    return results, Warehouse(root / "wh"), root


def test_it_writes_every_table_in_shards_and_reports_all_measures(small):
    results, wh, root = small
    assert json.loads((root / "warehouse_scale.json").read_text()) == json.loads(json.dumps(results))
    counts = results["write"]["rows_by_table"]
    assert counts["step_labels"] == pytest.approx(ROWS, rel=0.01)
    final = results["final_labels_write"]
    assert counts["step_labels"] == 3 * counts["steps"] == 3 * final["rows"]
    assert counts["rollouts"] == 16 * counts["problems"]
    assert {t: wh.scalar(f'SELECT count(*) FROM "{t}"') for t in counts} == counts
    assert wh.scalar("SELECT count(*) FROM final_labels") == final["rows"]
    assert results["write"]["shards"] > len(counts)  # big tables are split into shards
    assert final["shards"] > 1 and final["rows_per_s"] > 0
    # final-label shards hold whole problems, so each rollout has exactly one stepwise row
    assert wh.scalar("SELECT count(DISTINCT rollout_id) FROM stepwise_rows") == counts["rollouts"] \
        == wh.scalar("SELECT count(*) FROM stepwise_rows")
    assert results["write"]["rows_per_s"] > 0 and results["disk_mb_total"] > 0
    assert set(results["queries"]) == set(warehouse_scale.QUERIES)
    assert set(results["goals_met"]) == {"write", "label_stage_write_2_cores", *warehouse_scale.QUERIES}
    assert "load average" in warehouse_scale.table(results)


def test_the_timed_queries_give_the_right_answers(small):
    results, wh, _ = small
    q = results["queries"]
    rollouts, problems = results["write"]["rows_by_table"]["rollouts"], results["write"]["rows_by_table"]["problems"]
    assert q["first_error"]["rows"] == 3 * rollouts
    assert q["problem_stats"]["rows"] == problems
    assert q["export_stepwise"]["rows"] == rollouts  # every step kept and labeled: whole rollouts
    assert results["export"]["rows"] == rollouts and results["export"]["seconds"] > 0
    assert q["one_problem_first_errors"]["rows"] == 16 * 3
    # label_agreement against a count done by hand
    by_step = defaultdict(dict)
    for r in wh.rows("SELECT rollout_id, step_index, labeler, hard_label FROM step_labels"):
        by_step[(r["rollout_id"], r["step_index"])][r["labeler"]] = r["hard_label"]
    agreement = {(r["labeler_a"], r["labeler_b"]): r for r in wh.rows("SELECT * FROM label_agreement")}
    assert len(agreement) == 3
    for (a, b), row in agreement.items():
        same = sum(labels[a] == labels[b] for labels in by_step.values())
        assert row["steps"] == len(by_step) and row["agreement"] == pytest.approx(same / len(by_step))
    # first_error against the synthetic truth for the labeler that flips fewest labels
    truth = {r["rollout_id"]: r["true_first_error"] for r in wh.rows("SELECT rollout_id, true_first_error FROM rollouts")}
    first = wh.rows("SELECT rollout_id, first_error_step FROM first_error WHERE labeler = 'mc_value'")
    assert sum(truth[r["rollout_id"]] == r["first_error_step"] for r in first) / len(first) > 0.7
