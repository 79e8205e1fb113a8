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

import json

from prm_data.bank_reference import bank_operations, reference_agreement, reference_labels
from prm_data.warehouse import Warehouse
from prm_data.warehouses import open_warehouse

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
        "AND t.labeler = 'tool_verify' AND m.hard_label IS NOT NULL AND t.hard_label IS NOT NULL",
        {"run": run_id})[0]
    pass_rate = warehouse.scalar(
        "SELECT avg(CASE WHEN is_correct THEN 1.0 ELSE 0.0 END) FROM rollouts WHERE run_id = ?", [run_id])
    share = lambda part, whole: round(int(part) / int(whole), 4) if whole else None  # noqa: E731  (sums are DECIMAL)
    return {
        "kept_rollouts": int(first["rollouts"]),
        "first_step_bad": int(first["bad"] or 0),
        "first_step_bad_share": share(first["bad"] or 0, first["rollouts"]),
        "tool_contradicted_steps": int(tool["contradicted"]),
        "tool_contradicted_labeled_good": int(tool["labeled_good"] or 0),
        "tool_contradicted_unlabeled": int(tool["unlabeled"] or 0),
        "every_tool_contradiction_labeled_bad": not (tool["labeled_good"] or tool["unlabeled"]),
        "final_labels": int(final["labels"]),
        "good_share": share(final["good"] or 0, final["labels"]),
        "mc_tool_steps": int(agree["steps"]),
        "mc_tool_agreement": round(float(agree["agreement"]), 4) if agree["agreement"] is not None else None,
        "rollout_pass_rate": round(float(pass_rate), 4) if pass_rate is not None else None,
    }


def goals_met(quality: dict, max_first_step_bad: float = 0.4, good_share: tuple[float, float] = (0.3, 0.7)) -> dict:
    """Each figure against the goals of issue 17 (first-step bad share, tool vetoes, good share)."""
    first, good = quality["first_step_bad_share"], quality["good_share"]
    return {"first_step_bad_share": first is not None and first <= max_first_step_bad,
            "every_tool_contradiction_labeled_bad": quality["every_tool_contradiction_labeled_bad"],
            "good_share": good is not None and good_share[0] <= good <= good_share[1]}


def labeled_rollouts(warehouse: Warehouse, run_id: str, limit: int = 10) -> list[dict]:
    """Kept rollouts of a run with each step's text, final label and the labelers' verdicts, for reading.

    Rollouts are taken round-robin over problems (the first rollout of every problem, then the
    second, ...), so a sample of `limit` shows many problems rather than one.
    """
    rows = warehouse.rows(
        "WITH kept AS (SELECT DISTINCT rollout_id FROM final_labels WHERE run_id = $run AND kept), "
        "picked AS (SELECT r.rollout_id, r.problem_id, r.is_correct, r.final_answer, "
        "  row_number() OVER (PARTITION BY r.problem_id ORDER BY r.sample_index, r.rollout_id) AS nth "
        "  FROM rollouts r JOIN kept USING (rollout_id) WHERE r.run_id = $run "
        "  ORDER BY nth, r.problem_id LIMIT $limit) "
        "SELECT p.rollout_id, p.nth, pr.question, pr.answer, pr.source, pr.metadata, p.is_correct, p.final_answer, "
        "  s.step_index, s.text, "
        "  f.label, m.value AS mc_value, t.hard_label AS tool_ok "
        "FROM picked p JOIN problems pr ON pr.problem_id = p.problem_id AND pr.run_id = $run "
        "JOIN steps s ON s.rollout_id = p.rollout_id AND s.run_id = $run "
        "LEFT JOIN final_labels f ON f.rollout_id = s.rollout_id AND f.step_index = s.step_index "
        "  AND f.run_id = $run AND f.kept "
        "LEFT JOIN step_labels m ON m.rollout_id = s.rollout_id AND m.step_index = s.step_index "
        "  AND m.run_id = $run AND m.labeler = 'mc_value' "
        "LEFT JOIN step_labels t ON t.rollout_id = s.rollout_id AND t.step_index = s.step_index "
        "  AND t.run_id = $run AND t.labeler = 'tool_verify' "
        "ORDER BY p.nth, p.problem_id, s.step_index", {"run": run_id, "limit": limit})
    out: dict[str, dict] = {}
    for r in rows:
        ro = out.setdefault(r["rollout_id"], {k: r[k] for k in ("rollout_id", "question", "answer", "is_correct",
                                                                "final_answer", "source", "metadata")} | {"steps": []})
        ro["steps"].append({k: r[k] for k in ("step_index", "text", "label", "mc_value", "tool_ok")})
    for ro in out.values():  # bank problems: each step against the problem's own equations
        ops = bank_operations(ro["metadata"]) if ro["source"] == "bank" else None
        ref = [None] * len(ro["steps"]) if ops is None else \
            reference_labels([s["text"] for s in ro["steps"]], ops, bool(ro["is_correct"]))
        for s, right in zip(ro["steps"], ref):
            s["reference_right"] = right
    return list(out.values())


def format_labeled_rollout(rollout: dict) -> str:
    """A rollout as Markdown: the question, then each step with its final label and the labelers' evidence."""
    verdict = "right" if rollout["is_correct"] else f"wrong (answered {rollout['final_answer']})"
    lines = [f"**{rollout['question']}** (answer {rollout['answer']}; this rollout is {verdict})", ""]
    for s in rollout["steps"]:
        label = {True: "good", False: "BAD", None: "unlabeled"}[s["label"]]
        mc = "-" if s["mc_value"] is None else f"{s['mc_value']:.2f}"
        tool = {True: "verified", False: "contradicted", None: "no check"}[s["tool_ok"]]
        ref = {True: "; reference right", False: "; reference WRONG", None: ""}[s.get("reference_right")]
        lines.append(f"- `{label:>9}` (MC {mc}, tool {tool}{ref}) {' '.join(s['text'].split())}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m prm_data.run_quality WAREHOUSE [RUN_ID] [N]`: the figures, then N labeled rollouts as Markdown."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m prm_data.run_quality WAREHOUSE [RUN_ID] [N]", file=sys.stderr)
        return 2
    wh = open_warehouse(args[0])
    run_id = args[1] if len(args) > 1 and args[1] != "latest" else wh.scalar(
        "SELECT max(run_id) FROM rollouts")
    if run_id is None:
        print(f"no rollouts in warehouse {wh.root}", file=sys.stderr)
        return 1
    quality = label_quality(wh, run_id)
    print(json.dumps({"run_id": run_id, **quality, "goals_met": goals_met(quality),
                      "bank_reference": reference_agreement(wh, run_id)}, indent=2))
    for rollout in labeled_rollouts(wh, run_id, int(args[2]) if len(args) > 2 else 10):
        print("\n" + format_labeled_rollout(rollout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
