"""Reference step labels for bundled bank problems, from the problem's own operations.

A bank problem (prm_data/sources/bank.py) stores its start value and its
operations in `problems.metadata`, so the right equation of every position is
known: `v0 op1 a1 = v1`, `v1 op2 a2 = v2`, ... A rollout's step is *right* by
this reference when every equation it writes is the next one of that list (the
same operands, operator and result), and, if it is the rollout's last step, the
rollout's final answer is the gold answer (a last step that stops short states a
wrong final answer). A step with no equation (restating a value, "The answer is
\\boxed{12}.") is right unless it is such a last step.

This is stricter than tool verification, which checks that each equation is
true and that carried values match earlier results: "3 - 3 = 0" after "6 - 3 = 3"
is true arithmetic on a carried value, but it applies an operation the problem
does not have. It exists to measure whether final labels read right (issue 17),
not to label: it knows the problem's operations, which no labeler may see.
"""

from __future__ import annotations

import json
import re

from prm_data.sources.bank import apply_op
from prm_data.warehouse import Warehouse

_NUM = r"(-?\d+(?:\.\d+)?)"
EQUATION = re.compile(_NUM + r"\s*([-+*/×x÷])\s*" + _NUM + r"\s*=\s*" + _NUM)
_OPS = {"×": "*", "x": "*", "÷": "/"}


def expected_equations(metadata: dict) -> list[tuple[float, str, float, float]]:
    """(before, op, operand, after) of each operation of a bank problem, in order."""
    value, out = metadata["start"], []
    for op, operand in metadata["ops"]:
        after = apply_op(value, op, operand)
        out.append((float(value), op, float(operand), float(after)))
        value = after
    return out


def bank_operations(metadata: str | None) -> dict | None:
    """The start value and operations of a bank problem's `metadata` JSON; None when it has none."""
    try:
        data = json.loads(metadata) if metadata else None
    except ValueError:
        return None
    return data if isinstance(data, dict) and "start" in data and "ops" in data else None


def reference_labels(steps: list[str], metadata: dict, final_correct: bool) -> list[bool]:
    """Right (True) or wrong (False) for each step, by the problem's own equations (module docstring)."""
    want, pos, out = expected_equations(metadata), 0, []
    for i, step in enumerate(steps):
        right = True
        for a, op, b, c in EQUATION.findall(step):
            got = (float(a), _OPS.get(op, op), float(b), float(c))
            right = right and pos < len(want) and got == want[pos]
            pos += 1
        if i == len(steps) - 1 and not final_correct:
            right = False
        out.append(right)
    return out


def reference_agreement(warehouse: Warehouse, run_id: str) -> dict:
    """Kept final labels of a run's bank problems against the reference: how many wrong steps are called good."""
    rows = warehouse.rows(
        "WITH kept AS (SELECT DISTINCT rollout_id FROM final_labels WHERE run_id = $run AND kept) "
        "SELECT s.rollout_id, s.step_index, s.text, f.label, r.is_correct, pr.metadata "
        "FROM steps s JOIN kept USING (rollout_id) "
        "JOIN rollouts r ON r.rollout_id = s.rollout_id AND r.run_id = s.run_id "
        "JOIN problems pr ON pr.problem_id = r.problem_id AND pr.run_id = s.run_id "
        "LEFT JOIN final_labels f ON f.rollout_id = s.rollout_id AND f.step_index = s.step_index "
        "AND f.run_id = s.run_id AND f.kept "
        "WHERE s.run_id = $run AND pr.source = 'bank' ORDER BY s.rollout_id, s.step_index", {"run": run_id})
    by_rollout: dict[str, list[dict]] = {}
    for r in rows:
        by_rollout.setdefault(r["rollout_id"], []).append(r)
    counts = {"steps": 0, "reference_wrong": 0, "wrong_labeled_good": 0, "right_labeled_bad": 0}
    for steps in by_rollout.values():
        ops = bank_operations(steps[0]["metadata"])
        if ops is None:
            continue
        ref = reference_labels([s["text"] for s in steps], ops, bool(steps[0]["is_correct"]))
        for s, right in zip(steps, ref):
            if s["label"] is None:
                continue
            counts["steps"] += 1
            counts["reference_wrong"] += not right
            counts["wrong_labeled_good"] += (not right) and bool(s["label"])
            counts["right_labeled_bad"] += right and not s["label"]
    n = counts["steps"]
    counts["agreement"] = round((n - counts["wrong_labeled_good"] - counts["right_labeled_bad"]) / n, 4) if n else None
    counts["reference_good_share"] = round(1 - counts["reference_wrong"] / n, 4) if n else None
    return counts
