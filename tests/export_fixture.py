"""A small hand-labelled warehouse for export and evaluation tests.

Rows go straight into a temporary `Warehouse` with `write_shard` (the
warehouse contract; final labels with `write_final_labels`, which also builds
their `stepwise_rows`), so every expected export row can be computed by hand:

problem p-1 (rollouts r-1, r-2), p-2 (r-3, r-4), p-3 (r-5), p-4 (r-6, r-7), under policy `consensus`:

| rollout | steps | final labels (label/kept)          | stepwise rows        | processbench label |
|---------|-------|------------------------------------|----------------------|--------------------|
| r-1     | 3     | T T T                              | 3 steps T T T        | -1                 |
| r-2     | 3     | T F F(kept=False, after error)     | 2 steps T F          | 1                  |
| r-3     | 3     | T None(abstain, kept=False) T      | 1 step T             | left out           |
| r-4     | 2     | only under policy mc_only          | left out             | left out           |
| r-5     | 2     | F F                                | 2 steps F F          | 0                  |
| r-6     | 2     | T T                                | 2 steps T T          | -1                 |
| r-7     | 2     | T F                                | 2 steps T F          | 1                  |

Tree of p-1: root -> a (4/4), b (1/4), c (3/4); a -> a1 (2/2), a2 (0/2).
With margin 0.5 and min_samples 4: pairs (a > b, 0.75) and (c > b, 0.5); with
min_samples 2 also (a1 > a2, 1.0) whose prefix is [step a].
"""

from __future__ import annotations

import json

from prm_data.stepwise_rows import write_final_labels
from prm_data.warehouse import Warehouse

RUN = "run-fixture"
STEPS = {
    "r-1": ("p-1", ["Step 1: 3 + 4 = 7.", "Step 2: 7 * 2 = 14.", "Step 3: 14 - 5 = 9. The answer is 9."]),
    "r-2": ("p-1", ["Step 1: 3 + 4 = 7.", "Step 2: 7 * 2 = 15.", "Step 3: 15 - 5 = 10. The answer is 10."]),
    "r-3": ("p-2", ["Step 1: 10 / 2 = 5.", "Step 2: 5 + 5 = 10.", "Step 3: 10 + 1 = 11. The answer is 11."]),
    "r-4": ("p-2", ["Step 1: 10 / 2 = 5.", "Step 2: 5 + 6 = 11. The answer is 11."]),
    "r-5": ("p-3", ["Step 1: 6 - 1 = 4.", "Step 2: 4 * 3 = 12. The answer is 12."]),
    "r-6": ("p-4", ["Step 1: 8 + 8 = 16.", "Step 2: 16 / 4 = 4. The answer is 4."]),
    "r-7": ("p-4", ["Step 1: 8 + 8 = 16.", "Step 2: 16 / 4 = 5. The answer is 5."]),
}
CORRECT = {"r-1": True, "r-2": False, "r-3": True, "r-4": False, "r-5": False, "r-6": True, "r-7": False}
# (label, kept, value) per step, policy consensus
LABELS = {
    "r-1": [(True, True, 1.0), (True, True, 0.75), (True, True, None)],
    "r-2": [(True, True, 0.5), (False, True, 0.0), (False, False, 0.0)],
    "r-3": [(True, True, 0.9), (None, False, None), (True, True, 1.0)],
    "r-5": [(False, True, 0.1), (False, True, 0.0)],
    "r-6": [(True, True, 1.0), (True, True, 1.0)],
    "r-7": [(True, True, 0.5), (False, True, 0.0)],
}
QUESTIONS = {
    "p-1": "Mia has 3 apples. Then Mia gets 4 more apples. Then Mia ends up with 2 times as many apples. "
           "Then Mia gives away 5 apples. How many apples does Mia have now?",
    "p-2": "Tom has 10 cards. Then Tom splits the cards into 2 equal groups and keeps one group. "
           "Then Tom gets 5 more cards. How many cards does Tom have now?",
    "p-3": "Ava has 6 coins. Then Ava gives away 2 coins. Then Ava ends up with 3 times as many coins. "
           "How many coins does Ava have now?",
    "p-4": "Omar has 8 beads. Then Omar gets 8 more beads. Then Omar splits the beads into 4 equal groups "
           "and keeps one group. How many beads does Omar have now?",
}
ANSWERS = {"p-1": "9", "p-2": "10", "p-3": "12", "p-4": "4"}


def tree_rows() -> list[dict]:
    def node(nid, parent, depth, text, succ, n):
        return {"node_id": nid, "run_id": RUN, "problem_id": "p-1", "parent_id": parent, "depth": depth,
                "step_text": text, "visits": n, "mc_successes": succ, "mc_samples": n,
                "completion_ids": [f"c-{nid}-{i}" for i in range(n)], "completer_model": "sim-policy"}

    return [
        node("n-root", None, 0, None, 8, 12),
        node("n-a", "n-root", 1, "Step 1: 3 + 4 = 7.", 4, 4),
        node("n-b", "n-root", 1, "Step 1: 3 + 5 = 8.", 1, 4),
        node("n-c", "n-root", 1, "Step 1: 3 + 4 = 7 apples.", 3, 4),
        node("n-a1", "n-a", 2, "Step 2: 7 * 2 = 14.", 2, 2),
        node("n-a2", "n-a", 2, "Step 2: 7 * 2 = 15.", 0, 2),
    ]


def build_fixture_warehouse(root) -> Warehouse:
    wh = Warehouse(root)
    wh.write_shard("problems", [
        {"problem_id": pid, "run_id": RUN, "source": "bank", "question": q, "answer": ANSWERS[pid]}
        for pid, q in QUESTIONS.items()], run_id=RUN, shard="problems")
    wh.write_shard("rollouts", [
        {"rollout_id": rid, "run_id": RUN, "problem_id": pid, "policy_model": "sim-policy", "sample_index": i,
         "text": "\n\n".join(steps), "final_answer": None, "answer_status":
         "correct" if CORRECT[rid] else "incorrect", "is_correct": CORRECT[rid], "num_steps": len(steps)}
        for i, (rid, (pid, steps)) in enumerate(STEPS.items())], run_id=RUN, shard="rollouts")
    wh.write_shard("steps", [
        {"rollout_id": rid, "run_id": RUN, "problem_id": pid, "step_index": i, "text": text}
        for rid, (pid, steps) in STEPS.items() for i, text in enumerate(steps)], run_id=RUN, shard="steps")
    final = []
    for rid, labels in LABELS.items():
        for i, (label, kept, value) in enumerate(labels):
            final.append({"run_id": RUN, "problem_id": STEPS[rid][0], "rollout_id": rid, "step_index": i,
                          "policy": "consensus", "label": label, "value": value,
                          "sources": ["mc_value", "judge_vote"], "kept": kept,
                          "drop_reason": None if kept else "after_first_error"})
    final += [{"run_id": RUN, "problem_id": "p-2", "rollout_id": "r-4", "step_index": i, "policy": "mc_only",
               "label": True, "value": 1.0, "sources": ["mc_value"], "kept": True} for i in range(2)]
    write_final_labels(wh, final, RUN, "final")
    wh.write_shard("tree_nodes", tree_rows(), run_id=RUN, shard="tree")
    wh.write_shard("step_labels", [
        {"run_id": RUN, "problem_id": STEPS[rid][0], "rollout_id": rid, "step_index": i, "labeler": labeler,
         "labeler_version": "v1", "value": 1.0, "hard_label": ok, "prompt_tokens": 10, "completion_tokens": 5,
         "calls": 1}
        for rid, labels in LABELS.items() for i, (ok, _, _) in enumerate(labels)
        for labeler in ("mc_value", "judge_vote")], run_id=RUN, shard="step_labels")
    wh.write_shard("judgments", [
        {"judgment_id": "j-1", "run_id": RUN, "problem_id": "p-1", "rollout_id": "r-1", "judge": "sim-judge",
         "model": "sim-judge", "sample_index": 0, "mode": "per_step", "prompt_version": "judge_step.v1",
         "status": "vote", "step_verdicts": [True, True, True]}], run_id=RUN, shard="judgments")
    wh.write_shard("runs", [
        {"run_id": RUN, "flow": "label", "status": "completed", "git_sha": "abc123",
         "config_json": json.dumps({"labelers": ["mc_value", "judge_vote"], "rollouts_per_problem": 2})}],
        run_id=RUN, shard="runs")
    return wh
