"""Export formats, split and card, on the hand-labelled fixture warehouse (tests/export_fixture.py)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from datasets import List, Value, load_dataset
from export_fixture import RUN, STEPS, build_fixture_warehouse

from prm_data.export import (
    FEATURES,
    EmptyExport,
    ExportConfig,
    build_export,
    load_export,
    split_of,
)
from prm_data.export_run import run_export
from prm_data.stepwise_rows import backfill_stepwise_rows, write_final_labels

HALF = ExportConfig(test_fraction=0.5)


@pytest.fixture
def wh(tmp_path):
    return build_fixture_warehouse(tmp_path / "wh")


def _rows(dsd) -> dict[str, dict]:
    return {r.get("rollout_id") or r["chosen_node_id"]: r for split in dsd.values() for r in split}


def test_stepwise_rows_are_the_kept_labelled_prefix_of_each_rollout(wh):
    rows = _rows(build_export(wh, HALF)["stepwise"])
    assert set(rows) == {"r-1", "r-2", "r-3", "r-5", "r-6", "r-7"}  # r-4 has only mc_only labels
    assert rows["r-1"]["completions"] == STEPS["r-1"][1]
    assert rows["r-1"]["labels"] == [True, True, True]
    assert rows["r-1"]["values"] == [1.0, 0.75, 1.0]  # a missing value falls back to the hard label
    assert rows["r-2"]["completions"] == STEPS["r-2"][1][:2]  # step 3 was dropped after the first error
    assert rows["r-2"]["labels"] == [True, False]
    assert rows["r-3"]["labels"] == [True]  # the abstained step 2 ends the row
    assert rows["r-5"]["labels"] == [False, False]
    assert rows["r-5"]["label_sources"] == [["mc_value", "judge_vote"]] * 2
    assert rows["r-1"]["prompt"].startswith("Mia has 3 apples.")


def test_another_policy_exports_only_its_own_labels(wh):
    rows = _rows(build_export(wh, ExportConfig(policy="mc_only", formats=("stepwise",)))["stepwise"])
    assert list(rows) == ["r-4"] and rows["r-4"]["labels"] == [True, True]


def _relabel(wh, run_id: str, rollout_id: str, labels: list[bool | None]) -> None:
    """Run `run_id` relabels one rollout of the fixture (same steps, new final labels)."""
    pid, steps = STEPS[rollout_id]
    wh.write_shard("rollouts", [{**r, "run_id": run_id} for r in wh.rows(
        "SELECT * FROM rollouts WHERE rollout_id = ? AND run_id = ?", [rollout_id, RUN])], run_id=run_id, shard="r")
    wh.write_shard("steps", [{"rollout_id": rollout_id, "run_id": run_id, "problem_id": pid, "step_index": i,
                              "text": t} for i, t in enumerate(steps)], run_id=run_id, shard="s")
    write_final_labels(wh, [{"run_id": run_id, "problem_id": pid, "rollout_id": rollout_id, "step_index": i,
                             "policy": "consensus", "label": label, "value": None, "sources": ["judge_vote"],
                             "kept": label is not None} for i, label in enumerate(labels)], run_id, "final")


def test_the_latest_run_of_a_rollout_wins_whole_and_run_id_picks_one(wh):
    _relabel(wh, "run-z1", "r-1", [True, False, False])  # run ids sort after the fixture's
    _relabel(wh, "run-z2", "r-6", [None, True])  # the newest run kept no label for step 1
    latest = _rows(build_export(wh, HALF)["stepwise"])
    assert latest["r-1"]["labels"] == [True, False, False] and latest["r-1"]["values"] == [1.0, 0.0, 0.0]
    assert latest["r-1"]["label_sources"] == [["judge_vote"]] * 3  # labels, values, sources of one run
    assert "r-6" not in latest  # the older run's row never stands in for the newest run's empty one
    assert latest["r-5"]["labels"] == [False, False]  # rollouts no later run touched keep their labels
    fixture_only = _rows(build_export(wh, ExportConfig(test_fraction=0.5, run_id=RUN))["stepwise"])
    assert fixture_only["r-1"]["labels"] == [True, True, True] and fixture_only["r-6"]["labels"] == [True, True]
    one_run = _rows(build_export(wh, ExportConfig(test_fraction=0.5, run_id="run-z1"))["stepwise"])
    assert list(one_run) == ["r-1"]


def test_final_labels_written_without_stepwise_rows_get_them_at_export(wh):
    before = _rows(build_export(wh, HALF)["stepwise"])
    shards = sorted((wh.tables_dir / "stepwise_rows").glob("run_id=*/*.parquet"))
    assert [p.stem for p in shards] == ["final"]
    for path in shards:  # as a warehouse written before stepwise_rows existed
        path.unlink()
    assert build_export(wh, HALF)["stepwise"] and _rows(build_export(wh, HALF)["stepwise"]) == before
    assert sorted((wh.tables_dir / "stepwise_rows").glob("run_id=*/*.parquet")) == shards
    assert backfill_stepwise_rows(wh) == []  # once built, never again


def test_final_labels_of_another_run_are_refused(wh):
    with pytest.raises(ValueError, match="carry other run ids"):
        write_final_labels(wh, [{"run_id": RUN, "problem_id": "p-1", "rollout_id": "r-1", "step_index": 0,
                                 "policy": "consensus", "kept": True}], "run-other", "final")


def test_processbench_label_is_the_earliest_bad_step_or_minus_one(wh):
    rows = _rows(build_export(wh, HALF)["processbench"])
    assert {rid: r["label"] for rid, r in rows.items()} == {"r-1": -1, "r-2": 1, "r-5": 0, "r-6": -1, "r-7": 1}
    assert rows["r-2"]["steps"] == STEPS["r-2"][1]  # every step, also those after the error


def test_pairs_are_siblings_whose_mc_values_differ_by_the_margin(wh):
    pairs = _rows(build_export(wh, ExportConfig(formats=("pairs",)))["pairs"])
    assert {(k, r["rejected_node_id"]) for k, r in pairs.items()} == {("n-a", "n-b"), ("n-c", "n-b")}
    assert pairs["n-a"]["margin"] == pytest.approx(0.75) and pairs["n-a"]["prefix"] == []

    deeper = _rows(build_export(wh, ExportConfig(formats=("pairs",), pair_min_samples=2))["pairs"])
    assert set(deeper) == {"n-a", "n-c", "n-a1"}
    assert deeper["n-a1"]["prefix"] == ["Step 1: 3 + 4 = 7."]
    assert deeper["n-a1"]["prompt"].endswith("apples does Mia have now?\n\nStep 1: 3 + 4 = 7.\n\n")
    assert (deeper["n-a1"]["chosen"], deeper["n-a1"]["rejected"]) == ("Step 2: 7 * 2 = 14.", "Step 2: 7 * 2 = 15.")

    strict = build_export(wh, ExportConfig(formats=("pairs",), pair_margin=0.8, pair_min_samples=2))["pairs"]
    assert [r["chosen_node_id"] for r in strict["train"]] == ["n-a1"]


def test_split_is_by_problem_deterministic_and_near_the_fraction(wh):
    datasets = build_export(wh, HALF)
    for fmt, dsd in datasets.items():
        train = set(dsd["train"]["problem_id"]) if "train" in dsd else set()
        test = set(dsd["test"]["problem_id"]) if "test" in dsd else set()
        assert not train & test, fmt
        for pid in train | test:
            assert split_of(pid, 0.5) == ("test" if pid in test else "train")
    ids = [f"p-{i}" for i in range(4000)]
    share = sum(split_of(p, 0.1) == "test" for p in ids) / len(ids)
    assert 0.085 < share < 0.115
    assert [split_of(p, 0.1) for p in ids] == [split_of(p, 0.1) for p in ids]
    assert [split_of(p, 0.1, "other-salt") for p in ids] != [split_of(p, 0.1) for p in ids]


def test_features_are_declared_once_and_match_the_trl_contract(wh):
    assert FEATURES["stepwise"]["prompt"] == Value("string")
    assert FEATURES["stepwise"]["completions"] == List(Value("string"))
    assert FEATURES["stepwise"]["labels"] == List(Value("bool"))
    assert FEATURES["stepwise"]["values"] == List(Value("float64"))
    for fmt, dsd in build_export(wh, HALF).items():
        for ds in dsd.values():
            assert ds.features == FEATURES[fmt]


def test_the_folder_round_trips_through_parquet_and_save_to_disk(wh, tmp_path):
    result = run_export(wh, tmp_path / "out", HALF)
    built = build_export(wh, HALF)
    for fmt in ("stepwise", "processbench"):
        from_parquet = load_dataset(str(result.path), fmt, cache_dir=str(tmp_path / "cache"))
        from_disk = load_export(result.path, fmt)
        for split in built[fmt]:
            assert from_parquet[split].to_list() == built[fmt][split].to_list()
            assert from_disk[split].to_list() == built[fmt][split].to_list()
    assert result.counts == {"stepwise": {"train": 2, "test": 4}, "pairs": {"train": 2, "test": 0},
                             "processbench": {"train": 2, "test": 3}}

    again = run_export(wh, tmp_path / "out", ExportConfig(test_fraction=0.5, formats=("stepwise",)))
    assert sorted(p.name for p in again.path.iterdir()) == ["README.md", "arrow", "export.json", "stepwise"]


def test_a_folder_that_is_not_an_earlier_export_is_never_replaced(wh, tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty and holds no earlier export"):
        run_export(wh, precious, HALF)
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_a_policy_with_no_final_labels_is_refused_naming_the_policies_present(wh, tmp_path):
    with pytest.raises(EmptyExport, match=r"no final labels under policy 'nope'; policies present: "
                                          r"consensus \(\d+ kept steps\), mc_only"):
        run_export(wh, tmp_path / "out", ExportConfig(policy="nope", formats=("stepwise", "processbench")))
    assert not (tmp_path / "out").exists()


def test_without_a_policy_the_export_takes_the_one_present(wh, tmp_path):
    result = run_export(wh, tmp_path / "out", ExportConfig(run_id="run-fixture", formats=("stepwise",)))
    assert result.policy == "consensus"
    assert json.loads((result.path / "export.json").read_text())["export_config"]["policy"] == "consensus"


def test_the_card_states_config_runs_labelers_prompts_counts_balance_and_git_sha(wh, tmp_path):
    result = run_export(wh, tmp_path / "out", ExportConfig(test_fraction=0.5, license="apache-2.0"))
    text = (result.path / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "apache-2.0"
    assert meta["configs"][0] == {"config_name": "stepwise", "default": True, "data_files": [
        {"split": "train", "path": "stepwise/train-*"}, {"split": "test", "path": "stepwise/test-*"}]}
    assert [c["config_name"] for c in meta["configs"]] == ["stepwise", "pairs", "processbench"]
    assert [c["split"] for c in meta["configs"][1]["data_files"]] == ["train"]  # no empty test split
    assert meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["token-classification", "text-generation"]
    assert "prm_data" not in meta  # the provenance is in the file beside the card, not in its front matter
    prm = json.loads((result.path / "export.json").read_text())
    assert prm["export_config"]["policy"] == "consensus" and prm["export_config"]["test_fraction"] == 0.5
    assert prm["runs"] == [{"run_id": RUN, "flow": "label", "status": "completed", "config_version": None,
                            "git_sha": "abc123", "started_at": None, "finished_at": None,
                            "config": {"labelers": ["mc_value", "judge_vote"], "rollouts_per_problem": 2}}]
    assert {(l["labeler"], l["labeler_version"], l["steps"]) for l in prm["labelers"]} == {
        ("judge_vote", "v1", 15), ("mc_value", "v1", 15)}
    assert prm["prompt_versions"] == [{"used_by": "judgments", "prompt_version": "judge_step.v1", "n": 1}]
    assert prm["counts"] == result.counts
    assert prm["label_balance"]["stepwise"]["train"] == {"steps": 5, "positive": 4, "negative": 1,
                                                         "positive_fraction": 0.8}
    assert prm["label_balance"]["processbench"]["test"] == {"erroneous": 2, "correct": 1}
    assert prm["label_balance"]["pairs"] == {"train": {"mean_margin": 0.625}}  # (a > b, 0.75), (c > b, 0.5)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert prm["export_git_sha"] == head
    assert json.loads((result.path / "export.json").read_text())["counts"] == result.counts
    for column in FEATURES["stepwise"]:
        assert f"| `{column}` |" in text


def test_stepwise_rows_carry_each_code_rollouts_unit_test_outcomes_and_null_for_math(wh):
    code_steps = ["```python\ndef f(nums):", "    return sum(nums)\n```"]
    wh.write_shard("problems", [{"problem_id": "p-code", "run_id": RUN, "source": "code_bank",
                                 "question": "Write `f(nums)`.", "answer": "def f(nums):\n    return sum(nums)\n"}],
                   run_id=RUN, shard="problems-code")
    wh.write_shard("rollouts", [{"rollout_id": "r-code", "run_id": RUN, "problem_id": "p-code",
                                 "policy_model": "coder", "sample_index": 0, "text": "\n".join(code_steps),
                                 "answer_status": "incorrect", "is_correct": False, "num_steps": 2,
                                 "tests_passed": [True, False, True]}], run_id=RUN, shard="rollouts-code")
    wh.write_shard("steps", [{"rollout_id": "r-code", "run_id": RUN, "problem_id": "p-code", "step_index": i,
                              "text": t} for i, t in enumerate(code_steps)], run_id=RUN, shard="steps-code")
    write_final_labels(wh, [{"run_id": RUN, "problem_id": "p-code", "rollout_id": "r-code", "step_index": i,
                             "policy": "consensus", "label": ok, "value": v, "sources": ["mc_value"], "kept": True}
                            for i, (ok, v) in enumerate([(True, 0.5), (False, 0.0)])], RUN, "final-code")
    rows = _rows(build_export(wh, HALF)["stepwise"])
    assert rows["r-code"]["tests_passed"] == [True, False, True]  # in the unit tests' order
    assert rows["r-code"]["values"] == [0.5, 0.0]
    assert rows["r-1"]["tests_passed"] is None  # a math rollout has no unit tests


def test_stepwise_rows_written_before_tests_passed_existed_still_export_with_it_null(wh):
    import pyarrow.parquet as pq

    [shard] = wh.run_files("stepwise_rows", RUN)
    pq.write_table(pq.read_table(shard).drop_columns(["tests_passed"]), shard)  # an older writer's shard
    (wh.tables_dir / "stepwise_rows" / "_schema.parquet").unlink()  # and its older anchor, rebuilt on open
    rows = _rows(build_export(type(wh)(wh.root), HALF)["stepwise"])
    assert set(rows) == {"r-1", "r-2", "r-3", "r-5", "r-6", "r-7"}
    assert {r["tests_passed"] for r in rows.values()} == {None}
