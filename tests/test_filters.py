"""Filters keep rows and drop rows with reasons; HNC augmentation merges two steps."""

from __future__ import annotations

from prm_data.filters import (BalanceConfig, LengthLimits, NodeCompressionConfig, balance_classes, compress_nodes,
                              drop_by_length, drop_duplicate_rollouts, drop_repeated_steps, drop_unparseable,
                              mark_dropped, steps_by_rollout)
from prm_data.schema import to_table
from prm_data.stepwise_rows import write_final_labels
from prm_data.warehouse import Warehouse


def rollout(rid: str, text: str, problem: str = "p1", status: str = "correct") -> dict:
    return {"rollout_id": rid, "problem_id": problem, "text": text, "answer_status": status}


def final(rid: str, labels: list[bool], problem: str = "p1") -> list[dict]:
    return [{"run_id": "run-1", "problem_id": problem, "rollout_id": rid, "step_index": i, "policy": "consensus",
             "label": l, "value": float(l), "sources": ["mc_value"], "kept": True, "drop_reason": None}
            for i, l in enumerate(labels)]


def test_exact_duplicates_are_dropped_per_problem_and_point_to_the_kept_copy():
    rows = [rollout("a", "Step 1: 2 + 2 = 4.\n\nThe answer is 4."), rollout("b", "Step 1: 2 + 2 = 4.\n\nThe answer is 4."),
            rollout("c", "Step 1: 2 + 2 = 4.\n\nThe answer is 4.", problem="p2")]
    result = drop_duplicate_rollouts(rows, normalized=False)
    assert [r["rollout_id"] for r in result.kept] == ["a", "c"]
    assert result.dropped[0]["drop_reason"] == "duplicate_rollout: exact duplicate of a"


def test_normalized_duplicates_ignore_case_spacing_and_step_markers_but_not_numbers():
    rows = [rollout("a", "Step 1: Add: 2 + 2 = 4.\n\nThe answer is 4."),
            rollout("b", "step 1:  add:  2+2=4\n\nthe answer is 4"),
            rollout("c", "Step 1: Add: 2 + 2 = 5.\n\nThe answer is 5.")]
    assert [r["rollout_id"] for r in drop_duplicate_rollouts(rows, normalized=False).kept] == ["a", "b", "c"]
    result = drop_duplicate_rollouts(rows, normalized=True)
    assert [r["rollout_id"] for r in result.kept] == ["a", "c"]
    assert result.dropped[0]["drop_reason"].startswith("duplicate_rollout: normalized duplicate of a")


def test_rollouts_that_repeat_a_step_are_dropped():
    steps = {"loop": ["2 + 2 = 4", "Check: 2 + 2 = 4", "2+2 = 4"], "fine": ["2 + 2 = 4", "4 * 3 = 12"]}
    rows = [rollout("loop", ""), rollout("fine", "")]
    result = drop_repeated_steps(rows, steps=steps)
    assert [r["rollout_id"] for r in result.kept] == ["fine"]
    assert result.dropped[0]["drop_reason"].startswith("repeated_steps: a step occurs 2 times")
    assert [r["rollout_id"] for r in drop_repeated_steps(rows, steps=steps, max_repeats=2).kept] == ["loop", "fine"]


def test_length_limits_and_unparseable_answers():
    rows = [rollout("short", "Just 4."), rollout("long", "\n\n".join(f"Step {i}: x" for i in range(50))),
            rollout("ok", "Step 1: 2 + 2 = 4.\n\nThe answer is 4."), rollout("wide", "y" * 3000)]
    result = drop_by_length(rows, LengthLimits(min_steps=2, max_steps=40, max_step_chars=2000))
    assert [r["rollout_id"] for r in result.kept] == ["ok"]
    assert result.reasons() == {"length": 3}
    assert {r["rollout_id"]: r["drop_reason"] for r in result.dropped}["long"] == "length: 50 steps > 40"
    unparseable = drop_unparseable([rollout("a", "x", status="unparseable"), rollout("b", "y", status="incorrect")])
    assert [r["rollout_id"] for r in unparseable.kept] == ["b"]
    assert unparseable.dropped[0]["drop_reason"].startswith("unparseable:")


def test_rollout_drops_are_carried_into_final_labels_and_queryable(tmp_path):
    labels = final("a", [True, False]) + final("b", [True, True])
    dropped = drop_unparseable([rollout("a", "x", status="unparseable"), rollout("b", "y")]).dropped
    marked = mark_dropped(labels, dropped)
    assert [(r["rollout_id"], r["kept"]) for r in marked] == [("a", False), ("a", False), ("b", True), ("b", True)]
    wh = Warehouse(tmp_path)
    write_final_labels(wh, to_table("final_labels", marked), "run-1", "filtered")
    rows = wh.rows("SELECT drop_reason, count(*) AS n, any_value(rollout_id) AS rollout, "
                   "any_value(drop_detail) AS detail FROM final_labels WHERE NOT kept GROUP BY drop_reason")
    assert rows == [{"drop_reason": "unparseable", "n": 2, "rollout": "a",
                     "detail": "no final answer could be extracted"}]


def test_drop_reason_is_a_category_and_the_ids_go_to_drop_detail():
    labels = final("a", [True, False]) + final("b", [True, True]) + final("c", [True, True])
    labels[0:2] = [{**r, "kept": False, "drop_reason": "consensus: MC first error 1 != judges' first error 0"}
                   for r in labels[0:2]]
    dup = drop_duplicate_rollouts([rollout("b", "x"), rollout("c", "x")]).dropped  # c duplicates b
    marked = mark_dropped(labels, dup + [{**labels[0], "drop_reason": "injection: step 1 asks to ignore"}],
                          override=True)
    by_rollout = {r["rollout_id"]: (r["drop_reason"], r["drop_detail"]) for r in marked}
    assert by_rollout == {
        "a": ("injection", "step 1 asks to ignore; also consensus: MC first error 1 != judges' first error 0"),
        "b": (None, None),
        "c": ("duplicate_rollout", "normalized duplicate of b"),
    }


def test_class_balance_drops_whole_majority_rollouts_down_to_the_ratio():
    labels = final("mixed", [True, False])
    for i in range(6):
        labels += final(f"good{i}", [True, True, True])
    result = balance_classes(labels, BalanceConfig(max_ratio=3.0))
    kept_labels = [r["label"] for r in result.kept]
    assert kept_labels.count(True) <= 3 * kept_labels.count(False)
    assert {r["rollout_id"] for r in result.kept} >= {"mixed"}  # a rollout with both classes is never dropped
    assert all(r["drop_reason"] == "class_balance" and r["drop_detail"].startswith("problem p1 has too many good")
               and not r["kept"] for r in result.dropped)
    assert len(result.kept) + len(result.dropped) == len(labels)


def test_class_balance_keeps_a_minimum_of_rollouts_for_one_class_problems():
    labels = [row for i in range(4) for row in final(f"good{i}", [True, True], problem="easy")]
    result = balance_classes(labels, BalanceConfig(max_ratio=3.0, min_rollouts=2))
    assert len({r["rollout_id"] for r in result.kept}) == 2


def test_node_compression_adds_merged_copies_labeled_good_only_if_both_steps_were():
    labels = final("r1", [True, True, False, False]) + final("r2", [True, True, True])
    steps = {"r1": ["a", "b", "c", "d"], "r2": ["x", "y", "z"]}
    out = compress_nodes(labels, steps, NodeCompressionConfig(probability=1.0))
    new = steps_by_rollout(out.steps)
    assert set(new) == {rid for rid in new if rid.startswith(("r1~hnc", "r2~hnc"))} and len(new) == 2
    for rid, texts in new.items():
        original = steps[rid.split("~")[0]]
        k = int(rid.rsplit("hnc", 1)[1])
        assert len(texts) == len(original) - 1 and texts[k] == original[k] + "\n\n" + original[k + 1]
        merged = next(r for r in out.final_labels if r["rollout_id"] == rid and r["step_index"] == k)
        source_labels = [l["label"] for l in labels if l["rollout_id"] == rid.split("~")[0]]
        assert merged["label"] == (source_labels[k] and source_labels[k + 1])
        assert "hnc_merge" in merged["sources"]
    to_table("final_labels", out.final_labels)
    to_table("steps", out.steps)
    assert compress_nodes(labels, steps, NodeCompressionConfig(probability=0.0)).final_labels == []
