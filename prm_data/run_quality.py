"""Whether a run's final labels say something about the steps, not about the completer.

A Monte Carlo labeler (Math-Shepherd, Wang et al. 2024, arXiv:2312.08935)
marks a step bad when the completer model cannot finish the solution from it.
With a weak completer most first steps come out bad, even steps that only
restate the problem ("Noah starts with 4 stickers."): the labels then measure
the completer's weakness. `label_quality(warehouse, run_id)` computes the three
figures that show it, over the kept final labels of a run:

- `first_step_bad_share`: the share of kept rollouts whose first step is
  labeled bad. A first step of these bank problems restates the start value
  and applies one operation; a policy that solves most problems writes mostly
  right first steps, so a high share means the completer, not the step, decided.
- `tool_contradicted_steps` / `tool_contradicted_labeled_good`: steps whose
  arithmetic tool verification found wrong (`tool_verify` hard label false),
  and how many of them still have a good final label (should be 0).
- `good_share`: the share of good final labels (a dataset of nearly all good or
  nearly all bad steps teaches a PRM little).

Plus the agreement of Monte Carlo and tool verification on the steps both
label, and the pass rate of the run's rollouts, for context.
"""

from __future__ import annotations

from prm_data.warehouse import Warehouse

_KEPT = "FROM final_labels WHERE run_id = $run AND kept AND ($policy IS NULL OR policy = $policy)"


def label_quality(warehouse: Warehouse, run_id: str, policy: str | None = None) -> dict:
    """The label-quality figures of run `run_id` (see the module docstring); None where nothing was labeled."""
    p = {"run": run_id, "policy": policy}
    first = warehouse.rows(
        "SELECT count(*) AS rollouts, sum(CASE WHEN label = false THEN 1 ELSE 0 END) AS bad "
        f"{_KEPT} AND step_index = 0 AND label IS NOT NULL", p)[0]
    final = warehouse.rows(
        "SELECT count(*) AS labels, sum(CASE WHEN label THEN 1 ELSE 0 END) AS good "
        f"{_KEPT} AND label IS NOT NULL", p)[0]
    tool = warehouse.rows(
        "SELECT count(*) AS contradicted, sum(CASE WHEN f.label THEN 1 ELSE 0 END) AS labeled_good, "
        "sum(CASE WHEN f.label IS NULL THEN 1 ELSE 0 END) AS unlabeled "
        "FROM step_labels t JOIN final_labels f ON f.run_id = t.run_id AND f.rollout_id = t.rollout_id "
        "AND f.step_index = t.step_index "
        "WHERE t.run_id = $run AND t.labeler = 'tool_verify' AND t.hard_label = false AND f.kept "
        "AND ($policy IS NULL OR f.policy = $policy)", p)[0]
    agree = warehouse.rows(
        "SELECT count(*) AS steps, avg(CASE WHEN m.hard_label = t.hard_label THEN 1.0 ELSE 0.0 END) AS agreement "
        "FROM step_labels m JOIN step_labels t ON m.run_id = t.run_id AND m.rollout_id = t.rollout_id "
        "AND m.step_index = t.step_index WHERE m.run_id = $run AND m.labeler = 'mc_value' "
        "AND t.labeler = 'tool_verify' AND m.hard_label IS NOT NULL AND t.hard_label IS NOT NULL", p)[0]
    pass_rate = warehouse.scalar(
        "SELECT avg(CASE WHEN is_correct THEN 1.0 ELSE 0.0 END) FROM rollouts WHERE run_id = ?", [run_id])
    share = lambda part, whole: round(part / whole, 4) if whole else None  # noqa: E731
    return {
        "kept_rollouts": first["rollouts"],
        "first_step_bad": int(first["bad"] or 0),
        "first_step_bad_share": share(first["bad"] or 0, first["rollouts"]),
        "tool_contradicted_steps": tool["contradicted"],
        "tool_contradicted_labeled_good": int(tool["labeled_good"] or 0),
        "tool_contradicted_unlabeled": int(tool["unlabeled"] or 0),
        "every_tool_contradiction_labeled_bad": not (tool["labeled_good"] or tool["unlabeled"]),
        "final_labels": final["labels"],
        "good_share": share(final["good"] or 0, final["labels"]),
        "mc_tool_steps": agree["steps"],
        "mc_tool_agreement": round(agree["agreement"], 4) if agree["agreement"] is not None else None,
        "rollout_pass_rate": round(pass_rate, 4) if pass_rate is not None else None,
    }


def goals_met(quality: dict, max_first_step_bad: float = 0.4, good_share: tuple[float, float] = (0.3, 0.7)) -> dict:
    """Each figure against the goals of issue 17 (first-step bad share, tool vetoes, good share)."""
    first, good = quality["first_step_bad_share"], quality["good_share"]
    return {"first_step_bad_share": first is not None and first <= max_first_step_bad,
            "every_tool_contradiction_labeled_bad": quality["every_tool_contradiction_labeled_bad"],
            "good_share": good is not None and good_share[0] <= good <= good_share[1]}
