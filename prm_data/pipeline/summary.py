"""What a run produced, cost and where it is: the closing summary and the Prefect artifact."""

from __future__ import annotations

from datetime import datetime, timezone

from prm_data.labelers.registry import LABELERS
from prm_data.config import RunConfig
from prm_data.llm.cache import paid_by_run
from prm_data.run_quality import label_quality
from prm_data.run_warehouse import for_run
from prm_data.sanity import arithmetic_sanity
from prm_data.warehouses import open_warehouse

SHOWN_REASONS = 8


def run_summary(config: RunConfig, run_id: str, timings: dict | None = None, usage: dict | None = None) -> dict:
    wh = for_run(open_warehouse(config.warehouse), run_id)  # reads this run's shards only (issue 21)
    p = [run_id]
    one = lambda sql: wh.rows(sql, p)[0]  # noqa: E731
    rollouts = one("SELECT count(*) AS n, avg(CASE WHEN is_correct THEN 1.0 ELSE 0.0 END) AS pass_rate, "
                   "sum(CASE WHEN answer_status = 'unparseable' THEN 1 ELSE 0 END) AS unparseable, "
                   "sum(CASE WHEN finish_reason = 'length' THEN 1 ELSE 0 END) AS truncated, "
                   "sum(CASE WHEN problem_outcome = 'all_correct' THEN 1 ELSE 0 END) AS all_correct, "
                   "sum(CASE WHEN problem_outcome = 'all_incorrect' THEN 1 ELSE 0 END) AS all_incorrect "
                   "FROM rollouts WHERE run_id = ?")
    labelers = wh.rows(
        "SELECT labeler, count(*) AS steps, "
        "avg(CASE WHEN hard_label THEN 1.0 WHEN hard_label = false THEN 0.0 END) AS good_share, "
        "sum(CASE WHEN hard_label IS NULL THEN 1 ELSE 0 END) AS abstained, "
        "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, sum(calls) AS calls "
        "FROM step_labels WHERE run_id = ? GROUP BY labeler ORDER BY labeler", p)
    final = one("SELECT count(*) FILTER (WHERE kept) AS kept_steps, "
                "count(DISTINCT rollout_id) FILTER (WHERE kept) AS kept_rollouts, "
                "count(DISTINCT rollout_id) FILTER (WHERE NOT kept) AS dropped_rollouts, "
                "avg(CASE WHEN label THEN 1.0 ELSE 0.0 END) FILTER (WHERE kept) AS good_share "
                "FROM final_labels WHERE run_id = ?")
    drops = wh.rows("SELECT split_part(drop_reason, ':', 1) AS reason, count(DISTINCT rollout_id) AS rollouts "
                    "FROM final_labels WHERE run_id = ? AND NOT kept GROUP BY 1 ORDER BY 2 DESC", p)
    # the view over `wh`, the run's own labels: one grouping pass, where a self-join of the run's
    # step labels held them all in a hash table (140 MB at 12,000 problems); the same figures
    agreement = wh.rows("SELECT labeler_a, labeler_b, steps, agreement FROM label_agreement ORDER BY 1, 2")
    failures = wh.rows("SELECT stage, count(*) AS n FROM failures WHERE run_id = ? GROUP BY stage ORDER BY 2 DESC", p)
    failure_reasons = wh.rows(
        "SELECT stage, left(reason, 120) AS reason, count(*) AS n FROM failures WHERE run_id = ? "
        "GROUP BY ALL ORDER BY n DESC, stage, reason LIMIT ?", [run_id, SHOWN_REASONS])
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "cache_hits": 0, "cache_misses": 0}
    for u in (usage or {}).values():
        for k in totals:
            totals[k] += int(u.get(k, 0))
    started = one("SELECT min(started_at) AS t FROM runs WHERE run_id = ?")["t"]
    return {
        "run_id": run_id,
        "labeling_version": config.labeling_version(),
        "problems": one("SELECT count(*) AS n FROM run_problems WHERE run_id = ?")["n"],
        "rollouts": rollouts["n"], "pass_rate": rollouts["pass_rate"], "unparseable": rollouts["unparseable"],
        "truncated": rollouts["truncated"],
        # rollouts of problems all of whose rollouts are right (or wrong): not labeled with rollouts.skip_uniform
        "uniform": {"all_correct": int(rollouts["all_correct"] or 0),
                    "all_incorrect": int(rollouts["all_incorrect"] or 0), "skipped": config.rollouts.skip_uniform},
        "steps": one("SELECT count(*) AS n FROM steps WHERE run_id = ?")["n"],
        "labelers": labelers, "final": final, "drops": drops, "agreement": agreement,
        "failures": failures, "failures_total": sum(f["n"] for f in failures), "failure_reasons": failure_reasons,
        "usage": usage or {}, "tokens": totals, "paid": paid_by_run(wh, run_id), "timings": timings or {},
        "costs": cost_table(usage or {}, [l["labeler"] for l in labelers]),
        "stage_seconds": sum((timings or {}).values()),
        "wall_seconds": _seconds_since(started),
        "warehouse": str(wh.root), "duckdb": str(wh.db_path) if wh.db_path else None,
        # is the data about the steps or about the completer? (issues 16 and 17)
        "quality": label_quality(wh, run_id, config.aggregate.policy),
        "sanity": arithmetic_sanity(wh, run_id).to_dict(),
    }


def _quality_lines(s: dict) -> list[str]:
    """Label quality of the kept final labels, and each labeler against exact arithmetic (with warnings)."""
    lines: list[str] = []
    q = s.get("quality")
    if q and q.get("final_labels"):
        lines += ["", "| label quality (kept final labels) | value |", "|---|---|",
                  f"| kept rollouts labeled wrong at their first step | {q['first_step_bad']} of "
                  f"{q['kept_rollouts']} ({_fmt(q['first_step_bad_share'])}) |",
                  f"| steps tool verification contradicts: labeled good / unlabeled | "
                  f"{q['tool_contradicted_labeled_good']} / {q['tool_contradicted_unlabeled']} of "
                  f"{q['tool_contradicted_steps']} |",
                  f"| good share of final labels | {_fmt(q['good_share'])} |"]
    sanity = s.get("sanity") or {}
    if sanity.get("labelers"):
        lines += ["", f"| labeler vs exact arithmetic ({sanity['fully_checked_steps']} steps tool verification "
                  "fully checks) | steps | agreement | on verified | on contradicted |", "|---|---|---|---|---|"]
        lines += [f"| {r['labeler']} | {r['steps']} | {_fmt(r['agreement'])} | {_fmt(r['agreement_on_verified'])} "
                  f"| {_fmt(r['agreement_on_contradicted'])} |" for r in sanity["labelers"]]
    lines += [f"\nWarning: {w}" for w in sanity.get("warnings") or ()]
    return lines


def _uniform_note(s: dict) -> str:
    return " (not labeled: rollouts.skip_uniform)" if (s.get("uniform") or {}).get("skipped") else ""


def _seconds_since(started: datetime | None) -> float | None:
    if started is None:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - started).total_seconds()


def cost_table(usage: dict[str, dict], labelers: list[str]) -> list[dict]:
    """What this process paid, one row per purpose the model requests were made for, so every paid token is
    in exactly one row and the rows sum to what the servers served (cache hits cost nothing).

    The purpose is the one of the request that paid for an answer: a prefix-tree sample bought for
    mc_value and reused by omega_prm or progress stays in mc_value's row; `reused_by` names the tree
    labelers that paid nothing of their own.
    """
    tree_labelers = [n for n, entry in LABELERS.items() if "tree" in entry.needs]
    reusers = [n for n in labelers if n in tree_labelers and not (usage.get(n) or {}).get("calls")]
    rows = []
    for purpose in sorted(usage):
        u = usage[purpose]
        rows.append({"purpose": purpose, "calls": int(u.get("calls", 0)),
                     "prompt_tokens": int(u.get("prompt_tokens", 0)),
                     "completion_tokens": int(u.get("completion_tokens", 0)),
                     "cache_hits": int(u.get("cache_hits", 0)), "failures": int(u.get("failures", 0)),
                     "reused_by": [n for n in reusers if n != purpose] if purpose in tree_labelers else []})
    return rows


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def summary_markdown(s: dict, export: dict | None = None) -> str:
    uniform = s.get("uniform") or {}
    lines = [f"# prm-data run `{s['run_id']}`", "",
             "| what | value |", "|---|---|",
             f"| problems | {s['problems']} |",
             f"| rollouts (pass rate) | {s['rollouts']} ({_fmt(s['pass_rate'])}) |",
             f"| rollouts without a final answer (cut at max_tokens) | {_fmt(s.get('unparseable') or 0)} "
             f"({_fmt(s.get('truncated') or 0)}) |",
             f"| rollouts of problems every / no rollout solved{_uniform_note(s)} | "
             f"{_fmt(uniform.get('all_correct'))} / {_fmt(uniform.get('all_incorrect'))} |",
             f"| steps | {s['steps']} |",
             f"| kept rollouts / steps | {_fmt(s['final'].get('kept_rollouts'))} / {_fmt(s['final'].get('kept_steps'))} |",
             f"| good share of kept step labels | {_fmt(s['final'].get('good_share'))} |",
             f"| model calls in this process (cache hits) | {s['tokens']['calls']} ({s['tokens']['cache_hits']}) |",
             f"| prompt / completion tokens in this process | {s['tokens']['prompt_tokens']} / {s['tokens']['completion_tokens']} |",
             f"| paid by the run, all its processes: requests (prompt / completion tokens) | "
             f"{s['paid']['requests']} ({s['paid']['prompt_tokens']} / {s['paid']['completion_tokens']}) |",
             f"| failures | {s['failures_total']} |",
             f"| seconds: sum over stages / wall time since the run started | "
             f"{_fmt(s.get('stage_seconds'))} / {_fmt(s.get('wall_seconds'))} |", "",
             "| labeler | steps | good share | abstained |", "|---|---|---|---|"]
    for l in s["labelers"]:
        lines.append(f"| {l['labeler']} | {l['steps']} | {_fmt(l['good_share'])} | {l['abstained']} |")
    if s.get("costs"):
        lines += ["", "| paid for (this process) | calls | prompt tokens | completion tokens | cache hits |",
                  "|---|---|---|---|---|"]
        for c in s["costs"]:
            reuse = f" (samples reused by {', '.join(c['reused_by'])})" if c["reused_by"] else ""
            lines.append(f"| {c['purpose']}{reuse} | {c['calls']} | {c['prompt_tokens']} | "
                         f"{c['completion_tokens']} | {c['cache_hits']} |")
        lines.append(f"| total | {sum(c['calls'] for c in s['costs'])} | "
                     f"{sum(c['prompt_tokens'] for c in s['costs'])} | "
                     f"{sum(c['completion_tokens'] for c in s['costs'])} | {sum(c['cache_hits'] for c in s['costs'])} |")
    lines += _quality_lines(s)
    if s["agreement"]:
        lines += ["", "| labeler A | labeler B | steps | agreement |", "|---|---|---|---|"]
        lines += [f"| {a['labeler_a']} | {a['labeler_b']} | {a['steps']} | {_fmt(a['agreement'])} |"
                  for a in s["agreement"]]
    if s["drops"]:
        lines += ["", "| dropped because | rollouts |", "|---|---|"]
        lines += [f"| {d['reason']} | {d['rollouts']} |" for d in s["drops"]]
    if s["failures"]:
        lines += ["", "| failed stage | rows |", "|---|---|"] + [f"| {f['stage']} | {f['n']} |" for f in s["failures"]]
        reasons = s.get("failure_reasons") or []
        lines += ["", f"| most common failure reasons (top {SHOWN_REASONS}) | stage | rows |", "|---|---|---|"]
        lines += [f"| {_cell(r['reason'])} | {r['stage']} | {r['n']} |" for r in reasons]
        lines += ["", f"All failures: `prm-data query \"SELECT stage, item_id, reason FROM failures WHERE run_id = "
                  f"'{s['run_id']}'\"`"]
    for note in s.get("notes") or []:
        lines += ["", f"Note: {note}"]
    if export and export.get("path"):
        lines += ["", f"Export: `{export['path']}`"]
    lines += ["", f"Warehouse: `{s['warehouse']}`  ", f"Start with: `prm-data query \"SELECT * FROM first_error "
              f"WHERE rollout_id IN (SELECT rollout_id FROM rollouts WHERE run_id = '{s['run_id']}') LIMIT 20\"`"]
    return "\n".join(lines)
