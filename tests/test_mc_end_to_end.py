"""End to end on the synthetic policy: rollouts -> labels -> warehouse, checked against the known truth."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from prm_data.failures import FailureLog
from prm_data.labelers.protocol import LabelerInputs
from prm_data.labelers.registry import LABELERS
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.rollouts import RolloutConfig, generate_rollouts
from prm_data.sources.bank import generate_bank
from prm_data.trees.prefix_tree import PrefixTree
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stored_rollouts(tmp_path_factory):
    wh = Warehouse(tmp_path_factory.mktemp("wh"))
    problems = [p.to_row("run1") for p in generate_bank(8, seed=11, difficulty=(3, 5), ops="+-*")]
    wh.write_shard("problems", problems, run_id="run1", shard="bank")
    # the strict world (errors never cancel), in which every method should find the first errors;
    # benchmarks/labeling_cost.py measures how each degrades when they do cancel
    batch = generate_rollouts(problems, LLMClient(SimBackend(error_rate=0.15, cancel_rate=0.0)),
                              RolloutConfig(n=8, skip_uniform=True), "run1")
    batch.write(wh, shard="rollouts")
    return wh, batch


@pytest.mark.parametrize("name", ["mc_value", "omega_prm", "sibling", "progress"])
def test_each_labeler_finds_the_true_first_errors_through_the_warehouse(stored_rollouts, name):
    wh, batch = stored_rollouts
    rollouts = batch.for_labeling()
    assert rollouts and any(not r.is_correct for r in rollouts)
    labeler = LABELERS[name]
    completer = Completer(LLMClient(SimBackend(model="sim-completer", error_rate=0.05, cancel_rate=0.0)),
                          run_id="run1")
    inputs = LabelerInputs("run1", rollouts, list(batch.problems.values()), FailureLog("run1"), sampler=completer)
    labels = labeler.run(inputs, labeler.config()).labels
    assert len(labels) == sum(len(r.steps) for r in rollouts)
    wh.write_shard("step_labels", [l.to_row("run1") for l in labels], run_id="run1", shard=name)
    wh.write_shard("completions", completer.completion_rows, run_id="run1", shard=name)
    wh.write_shard("tree_nodes", completer.tree.to_rows("run1"), run_id="run1", shard=name)
    rows = wh.rows(
        "SELECT f.first_error_step, r.true_first_error FROM first_error f "
        "JOIN rollouts r USING (rollout_id) WHERE f.labeler = ?", [name])
    assert len(rows) == len(rollouts)
    accuracy = sum(r["first_error_step"] == r["true_first_error"] for r in rows) / len(rows)
    assert accuracy >= 0.85, f"{name}: first-error accuracy {accuracy:.2f}"
    spent = wh.scalar("SELECT sum(completion_tokens) FROM completions WHERE purpose = ?", [name])
    assert spent == completer.client.stats.total.completion_tokens > 0
    reloaded = PrefixTree.from_rows(wh.rows("SELECT * FROM tree_nodes WHERE completer_model = 'sim-completer'"))
    assert reloaded.model == "sim-completer" and len(reloaded) >= len(completer.tree)


@pytest.mark.slow
def test_the_quick_labeling_cost_benchmark_reports_every_method(tmp_path):
    spec = importlib.util.spec_from_file_location("labeling_cost", ROOT / "benchmarks" / "labeling_cost.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # the default setting (every method) and the two ends of the cancellation axis; the other settings
    # run the same code with other completer parameters (`python benchmarks/labeling_cost.py --quick`)
    results = bench.run(quick=True, out_dir=tmp_path, only=["no_cancellation", "cancellation_0.15"])
    assert set(results["settings"]) == {"default", "no_cancellation", "cancellation_0.15"}
    assert (tmp_path / "labeling_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "labeling_cost.json").stat().st_size > 0
    for name, setting in results["settings"].items():
        methods = setting["methods"]
        every_method = bench.SETTINGS[name][3]
        assert set(methods) == ({n for n, _, _ in bench.METHODS} if every_method else set(bench.SWEEP_METHODS))
        base = methods[bench.BASELINE]
        assert base["labeled_steps"] == setting["steps_labeled"]
        assert methods[bench.PAPER_BINARY_SEARCH]["token_reduction_vs_baseline"] >= 3.0
        for saving in ("early_stop_mc", "tree_reuse_mc", "early_stop_binary_search"):
            if saving in setting["savings"]:
                assert setting["savings"][saving]["fraction_saved"] > 0.1
        assert setting["goals"]["paper_binary_search"]["method"] == bench.PAPER_BINARY_SEARCH
    # binary search assumes a wrong prefix never reaches the answer: it loses accuracy when errors cancel
    accuracy = {name: s["methods"][bench.PAPER_BINARY_SEARCH]["first_error_accuracy"]
                for name, s in results["settings"].items()}
    assert accuracy["no_cancellation"] > accuracy["cancellation_0.15"]
