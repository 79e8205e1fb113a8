"""`build_openrlhf_rows` on hand-made stepwise rows: which rows clash with the placeholder token.

The clash check first searches the character data of all steps (and all prompts) at
once and only then looks row by row, so the placeholder written across the end of
one step and the start of the next must not count as a clash.
"""

from __future__ import annotations

import pyarrow as pa

from prm_data.exports.openrlhf import OpenRLHFConfig, build_openrlhf_rows


def _stepwise(prompts: list[str], steps: list[list[str]]) -> pa.Table:
    n = len(prompts)
    return pa.table({"problem_id": [f"p-{i}" for i in range(n)], "rollout_id": [f"r-{i}" for i in range(n)],
                     "prompt": prompts, "completions": pa.array(steps, pa.list_(pa.string())),
                     "labels": pa.array([[True] * len(s) for s in steps], pa.list_(pa.bool_())),
                     "values": pa.array([[1.0] * len(s) for s in steps], pa.list_(pa.float64())),
                     "is_correct": [True] * n})


def test_the_placeholder_split_across_two_steps_or_two_prompts_is_no_clash():
    rows, card = build_openrlhf_rows(_stepwise(["Q ends in к", "иQ"], [["step к", "и step"], ["к"]]),
                                     OpenRLHFConfig())
    assert card["left_out"] == {"text_contains_placeholder": 0}
    assert rows["input"].to_pylist() == ["Q ends in к\nstep к ки\nи step ки", "иQ\nк ки"]


def test_a_placeholder_inside_a_step_or_a_prompt_leaves_that_row_out():
    rows, card = build_openrlhf_rows(_stepwise(["Q1", "Q2 ки", "Q3"], [["a"], ["b"], ["c", "d ки"]]),
                                     OpenRLHFConfig())
    assert card["left_out"] == {"text_contains_placeholder": 2}
    assert rows["rollout_id"].to_pylist() == ["r-0"]
