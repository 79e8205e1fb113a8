"""The bank reference calls a step right only when it writes the problem's own next equation.

Specifications:
- a rollout that writes the problem's equations in order is right at every step, however it
  groups them into steps and whatever it restates;
- an invented extra operation, a wrong operand or result, and a last step that stops short with a
  wrong final answer are wrong, even where the arithmetic itself is true;
- over a real warehouse, kept final labels are counted against it (wrong steps labeled good,
  right steps labeled bad), and unkept rollouts and other runs do not count.
"""

from __future__ import annotations

import json

from prm_data.bank_reference import reference_agreement, reference_labels
from prm_data.warehouse import Warehouse

TOM = {"start": 6, "ops": [["-", 3], ["+", 5]]}  # 6 - 3 = 3, 3 + 5 = 8


def test_the_problems_own_equations_in_order_are_right_however_grouped():
    steps = ["Step 1: Tom starts with 6 stamps. Tom gives away 3, so 6 - 3 = 3.",
             "Step 2: Tom gets 5 more, so 3 + 5 = 8. The answer is \\boxed{8}."]
    assert reference_labels(steps, TOM, final_correct=True) == [True, True]
    one = ["Step 1: 6 - 3 = 3, then 3 + 5 = 8.", "The answer is \\boxed{8}."]
    assert reference_labels(one, TOM, final_correct=True) == [True, True]


def test_an_invented_operation_a_wrong_result_and_a_short_stop_are_wrong():
    invented = ["Step 1: 6 - 3 = 3.", "Step 2: 3 + 5 = 8.", "Step 3: Tom gets 3 more, so 8 + 3 = 11."]
    assert reference_labels(invented, TOM, final_correct=False) == [True, True, False]
    wrong_result = ["Step 1: 6 - 3 = 4.", "Step 2: 4 + 5 = 9. The answer is \\boxed{9}."]
    assert reference_labels(wrong_result, TOM, final_correct=False) == [False, False]
    repeated = ["Step 1: 6 - 3 = 3.", "Step 2: Tom gives away 3 again, so 3 - 3 = 0."]  # true arithmetic
    assert reference_labels(repeated, TOM, final_correct=False) == [True, False]
    short = ["Step 1: 6 - 3 = 3. The answer is \\boxed{3}."]  # right equation, wrong final answer
    assert reference_labels(short, TOM, final_correct=False) == [False]


def test_kept_final_labels_are_counted_against_the_reference(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    run = "run-a"
    wh.write_shard("problems", [{"problem_id": "p1", "run_id": run, "source": "bank", "question": "Tom?",
                                 "answer": "8", "metadata": json.dumps(TOM)}], run_id=run)
    texts = {"r1": ["Step 1: 6 - 3 = 3.", "Step 2: 3 + 5 = 8."],            # right, right
             "r2": ["Step 1: 6 - 3 = 3.", "Step 2: 3 - 3 = 0."],            # right, wrong
             "r3": ["Step 1: 6 - 3 = 2."]}                                  # wrong, not kept
    labels = {"r1": [True, False], "r2": [True, True], "r3": [True]}
    wh.write_shard("rollouts", [{"rollout_id": r, "run_id": run, "problem_id": "p1", "sample_index": i,
                                 "policy_model": "m", "text": "\n\n".join(t),
                                 "answer_status": "correct" if r == "r1" else "incorrect",
                                 "is_correct": r == "r1", "num_steps": len(t)}
                                for i, (r, t) in enumerate(texts.items())], run_id=run)
    wh.write_shard("steps", [{"run_id": run, "rollout_id": r, "problem_id": "p1", "step_index": i, "text": s}
                             for r, t in texts.items() for i, s in enumerate(t)], run_id=run)
    wh.write_shard("final_labels", [{"run_id": run, "problem_id": "p1", "rollout_id": r, "step_index": i,
                                     "policy": "hybrid", "label": good, "kept": r != "r3"}
                                    for r, ls in labels.items() for i, good in enumerate(ls)], run_id=run)
    got = reference_agreement(wh, run)
    assert (got["steps"], got["reference_wrong"], got["wrong_labeled_good"], got["right_labeled_bad"]) == (4, 1, 1, 1)
    assert got["agreement"] == 0.5 and got["reference_good_share"] == 0.75
    assert reference_agreement(wh, "run-b")["steps"] == 0
