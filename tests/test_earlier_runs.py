"""A run on a warehouse full of earlier runs does what it does on an empty one, and reads none of
their shards (issue 21: what a step label costs must not grow with the warehouse).

The earlier runs are made the way `benchmarks/pipeline_scale.py` makes them: copies of one real
run of the pipeline under other run, problem and request ids. Then every shard they wrote to a
per-run table that the new run has no reason to read is overwritten with bytes that are no
Parquet file, so the run fails if any of its queries opens one. Left readable, because a run
reads them across runs by design: `problems` (shared by every run), `runs` and `run_problems`
(which problems earlier runs finished: one small file per run), `tree_nodes` (earlier prefix
trees of the same problems, whose samples are reused) and `llm_cache` (the answer store).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pipeline_scale  # noqa: E402

from prm_data.config import RunConfig  # noqa: E402
from prm_data.pipeline.serial import run_serial  # noqa: E402
from prm_data.warehouse import Warehouse  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOT_READ_ACROSS_RUNS = ("rollouts", "steps", "completions", "step_labels", "judgments", "rubrics", "final_labels",
                        "stepwise_rows", "failures", "eval_results")
COMPARED_TABLES = ("rollouts", "steps", "step_labels", "judgments", "final_labels", "stepwise_rows")
# Not `paid`: the judge probes are the same requests in every run, so the earlier run's answers serve them.
SUMMARY_KEYS = ("problems", "rollouts", "pass_rate", "steps", "labelers", "final", "drops", "agreement",
                "failures_total", "quality", "sanity")


def small_config(folder: Path, bank_seed: int) -> RunConfig:
    cfg = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    cfg["problems"]["source"] = f"bank:6:3:{bank_seed}"
    cfg["rollouts"]["n"] = 2
    cfg["labeling"]["mc_value"]["k"] = 2
    cfg["labeling"]["judge_vote"]["judges"][0]["samples"] = 2
    cfg.update(warehouse=str(folder / "wh"), reports_dir=str(folder / "reports"), shard_size=3)
    cfg["export"]["out_dir"] = str(folder / "export")
    return RunConfig.model_validate(cfg)


def run_rows(wh: Warehouse, table: str, run_id: str) -> list[dict]:
    """The run's rows of `table` without run ids and timestamps, in a fixed order."""
    data = wh.read_files(table, wh.run_files(table, run_id))
    keep = [f.name for f in data.schema if f.name != "run_id" and not pa.types.is_timestamp(f.type)]
    return sorted(data.select(keep).to_pylist(), key=repr)


@pytest.fixture(scope="module")
def empty_and_full(tmp_path_factory):
    root = tmp_path_factory.mktemp("earlier-runs")
    empty = run_serial(small_config(root / "empty", bank_seed=0))
    run_serial(small_config(root / "seed", bank_seed=1))  # other problems than the measured run's
    seed_labels = Warehouse(root / "seed" / "wh").scalar("SELECT count(*) FROM step_labels")
    full_wh = root / "full" / "wh"
    pipeline_scale.replicate_history(root / "seed" / "wh", full_wh, 4 * seed_labels)
    for store in full_wh.glob("llm_cache.sqlite*"):
        store.unlink()
    pipeline_scale._copy_answers_into_store(full_wh, REPO)
    wh = Warehouse(full_wh)
    spoiled = [p for t in NOT_READ_ACROSS_RUNS for p in wh.run_files(t, None)]
    for path in spoiled:
        path.write_bytes(b"not a parquet file")
    full = run_serial(small_config(root / "full", bank_seed=0))
    return root, empty, full, len(spoiled)


@pytest.mark.slow
def test_a_run_among_earlier_runs_opens_none_of_their_shards(empty_and_full):
    root, _, full, spoiled = empty_and_full
    assert spoiled > 40  # four earlier runs' shards, each unreadable
    assert full["final"]["kept_rollouts"] > 0 and full["export"].get("path")


@pytest.mark.slow
def test_a_run_among_earlier_runs_writes_the_rows_it_writes_on_an_empty_warehouse(empty_and_full):
    root, empty, full, _ = empty_and_full
    empty_wh, full_wh = Warehouse(root / "empty" / "wh"), Warehouse(root / "full" / "wh")
    for table in COMPARED_TABLES:
        assert run_rows(full_wh, table, full["run_id"]) == run_rows(empty_wh, table, empty["run_id"]), table


@pytest.mark.slow
def test_a_run_among_earlier_runs_has_the_summary_of_one_on_an_empty_warehouse(empty_and_full):
    _, empty, full, _ = empty_and_full
    assert {k: full[k] for k in SUMMARY_KEYS} == {k: empty[k] for k in SUMMARY_KEYS}


@pytest.mark.slow
def test_the_nightly_export_holds_the_run_and_nothing_of_the_runs_before_it(empty_and_full):
    root, empty, full, _ = empty_and_full
    assert full["export"]["counts"] == empty["export"]["counts"]
    for fmt in ("stepwise", "processbench", "pairs"):
        for split in ("train", "test"):
            a = root / "empty" / "export" / fmt / f"{split}-00000-of-00001.parquet"
            b = root / "full" / "export" / fmt / f"{split}-00000-of-00001.parquet"
            assert a.exists() == b.exists(), (fmt, split)
            if a.exists():
                assert pq.read_table(b).to_pylist() == pq.read_table(a).to_pylist(), (fmt, split)
