"""Plots over the whole warehouse (every run, accumulated over nights) or the rollouts of one export.

`prm-data report` writes, into one folder, a PNG per view and `report.json`
with the numbers behind every plot:

- `label_balance_by_step.png`: share of good / bad kept final labels at each step index;
- `steps_per_rollout.png`: how many steps the rollouts have;
- `first_error_positions.png`: each labeler's first wrong step (-1 = none);
- `agreement_kappa.png`: pairwise agreement and Cohen's kappa of the labelers' hard labels
  on the same steps (Cohen, 1960: kappa = (p_o - p_e) / (1 - p_e), p_e from each labeler's
  own share of good labels, so two labelers that both say "good" 90 % of the time are not
  credited for agreeing by chance);
- `calibration.png`, where a reference exists (the synthetic policy's `true_first_error`):
  for each labeler's soft value, binned, the share of steps the reference calls good;
- `cost_per_kept_step.png`: tokens paid (the runs' cost tables) per kept final step, per
  run in start order, and accumulated over the nights.

Legends sit right of the axes, where they never cover a bar; `report_figures`
returns the laid-out figures, which tests/test_report_legends.py draws to check
that no legend's box overlaps a bar's and that every legend is inside its figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prm_data.warehouse import Warehouse  # noqa: E402

CALIBRATION_BINS = 10


def legend_outside(ax) -> None:
    """The legend right of the axes, where it can never cover a bar."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def save_figure(fig, path: Path) -> str:
    """Write a laid-out figure as PNG and free it."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def laid_out(fig):
    """The figure after tight_layout, as it will be saved."""
    fig.tight_layout()  # legends outside the axes are part of the layout: tight_layout keeps them in the figure
    return fig


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def cohen_kappa(both_good: int, a_only: int, b_only: int, both_bad: int) -> float | None:
    """Cohen's kappa of two raters on binary labels from their 2x2 table; None when undefined."""
    n = both_good + a_only + b_only + both_bad
    if n == 0:
        return None
    p_o = (both_good + both_bad) / n
    a_good, b_good = (both_good + a_only) / n, (both_good + b_only) / n
    p_e = a_good * b_good + (1 - a_good) * (1 - b_good)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


IN_SCOPE = "($ids::VARCHAR[] IS NULL OR list_contains($ids::VARCHAR[], rollout_id))"  # the export's rollouts, or all


def report_data(warehouse: Warehouse, rollout_ids: list[str] | None = None) -> dict:
    """The numbers behind every plot, over the whole warehouse or the given rollouts."""
    wh, p = warehouse, {"ids": rollout_ids}
    balance = wh.rows("SELECT step_index, count(*) FILTER (WHERE label) AS good, "
                      "count(*) FILTER (WHERE NOT label) AS bad FROM final_labels WHERE kept AND " + IN_SCOPE +
                      " GROUP BY step_index ORDER BY step_index", p)
    steps = wh.rows("SELECT num_steps, count(*) AS rollouts FROM rollouts WHERE " + IN_SCOPE +
                    " GROUP BY ALL ORDER BY 1", p)
    first = wh.rows("SELECT labeler, first_error_step, count(*) AS rollouts FROM first_error WHERE " + IN_SCOPE +
                    " GROUP BY ALL ORDER BY 1, 2", p)
    patterns = wh.rows("""
        WITH scoped AS (SELECT * FROM step_labels WHERE hard_label IS NOT NULL AND """ + IN_SCOPE + """),
        names AS (SELECT labeler, (row_number() OVER (ORDER BY labeler) - 1)::INTEGER AS bit
                  FROM (SELECT DISTINCT labeler FROM scoped)),
        per_step AS (
            SELECT bit_or(1::BIGINT << n.bit) AS present,
                   bit_or(CASE WHEN s.hard_label THEN 1::BIGINT << n.bit ELSE 0::BIGINT END) AS good
            FROM scoped s JOIN names n USING (labeler)
            GROUP BY s.run_id, s.rollout_id, s.step_index)
        SELECT present, good, count(*) AS steps, (SELECT list(labeler ORDER BY bit) FROM names) AS names
        FROM per_step GROUP BY ALL""", p)
    return {"label_balance_by_step": balance, "steps_per_rollout": steps, "first_error_positions": first,
            "agreement": _pairwise(patterns), "calibration": _calibration(wh, p),
            "cost_per_kept_step": _costs(wh, p),
            "scope": "warehouse" if rollout_ids is None else f"{len(rollout_ids)} rollouts"}


def _pairwise(patterns: list[dict]) -> list[dict]:
    if not patterns:
        return []
    names = patterns[0]["names"]
    out = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            cells = [0, 0, 0, 0]  # both good, a only good, b only good, both bad
            for pat in patterns:
                if (pat["present"] >> i) & 1 and (pat["present"] >> j) & 1:
                    ga, gb = (pat["good"] >> i) & 1, (pat["good"] >> j) & 1
                    cells[{(1, 1): 0, (1, 0): 1, (0, 1): 2, (0, 0): 3}[(ga, gb)]] += pat["steps"]
            n = sum(cells)
            if n:
                out.append({"labeler_a": a, "labeler_b": names[j], "steps": n,
                            "agreement": (cells[0] + cells[3]) / n, "kappa": cohen_kappa(*cells)})
    return out


def _calibration(wh: Warehouse, p: dict) -> dict:
    """Per labeler and value bin: steps and the share the reference (true_first_error) calls good.

    Progress and sibling values are advantages in [-1, 1], not probabilities: left out.
    """
    rows = wh.rows("""
        WITH scoped AS (SELECT * FROM step_labels WHERE value IS NOT NULL
                        AND labeler NOT IN ('progress', 'sibling') AND """ + IN_SCOPE + """)
        SELECT s.labeler, least(floor(greatest(s.value, 0.0) * $bins), $bins - 1)::INT AS bin,
               count(*) AS steps,
               avg(CASE WHEN r.true_first_error = -1 OR s.step_index < r.true_first_error THEN 1.0 ELSE 0.0 END)
                   AS reference_good, avg(s.value) AS mean_value
        FROM scoped s JOIN rollouts r ON r.rollout_id = s.rollout_id AND r.run_id = s.run_id
        WHERE r.true_first_error IS NOT NULL
        GROUP BY ALL ORDER BY 1, 2""", {**p, "bins": CALIBRATION_BINS})
    return {"reference": "rollouts.true_first_error" if rows else None, "bins": rows}


def _costs(wh: Warehouse, p: dict) -> list[dict]:
    runs = wh.rows("SELECT run_id, any_value(summary) AS summary, min(started_at) AS started_at, "
                   "max(coalesce(paid_prompt_tokens, 0) + coalesce(paid_completion_tokens, 0)) AS paid "
                   "FROM runs WHERE status = 'completed' GROUP BY run_id ORDER BY started_at, run_id")
    kept = {r["run_id"]: r["kept"] for r in wh.rows(
        "SELECT run_id, count(*) FILTER (WHERE kept) AS kept FROM final_labels WHERE " + IN_SCOPE +
        " GROUP BY run_id", p)}
    out, tokens_total, kept_total = [], 0, 0
    for run in runs:
        if run["run_id"] not in kept:
            continue
        costs = (json.loads(run["summary"]) if run["summary"] else {}).get("costs")
        # the cost table (what the servers served); a run from before it: what its request cache paid
        tokens = sum(c["prompt_tokens"] + c["completion_tokens"] for c in costs) if costs else run["paid"]
        tokens_total += tokens
        kept_total += kept[run["run_id"]]
        out.append({"run_id": run["run_id"], "tokens": tokens, "tokens_from": "cost table" if costs else "paid",
                    "kept_steps": kept[run["run_id"]],
                    "tokens_per_kept_step": tokens / kept[run["run_id"]] if kept[run["run_id"]] else None,
                    "accumulated_tokens_per_kept_step": tokens_total / kept_total if kept_total else None})
    return out


def write_warehouse_report(warehouse: Warehouse, out_dir: str | Path, rollout_ids: list[str] | None = None) -> list[str]:
    """Write the PNGs and report.json into `out_dir`; returns their paths."""
    data = report_data(warehouse, rollout_ids)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_figure(fig, out / f"{name}.png") for name, fig in report_figures(data).items()]
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    paths.append(str(out / "report.json"))
    return paths


def report_figures(data: dict) -> dict:
    """One laid-out matplotlib Figure per plot of `report_data(...)`, by file name (without .png)."""
    return {name: laid_out(draw(data)) for name, draw in PLOTS.items()}


def _label_balance_by_step(data: dict):
    fig, ax = plt.subplots(figsize=(8, 4))
    if data["label_balance_by_step"]:
        b = data["label_balance_by_step"]
        totals = [r["good"] + r["bad"] for r in b]
        idx = [r["step_index"] for r in b]
        ax.bar(idx, [r["good"] / t for r, t in zip(b, totals)], color="#2a9d8f", label="good")
        ax.bar(idx, [r["bad"] / t for r, t in zip(b, totals)], bottom=[r["good"] / t for r, t in zip(b, totals)],
               color="#e76f51", label="bad")
        ax.set_xlabel("step index")
        ax.set_ylabel("share of kept final labels")
        legend_outside(ax)
    else:
        _empty(ax, "kept final labels")
    ax.set_title("Label balance by step index")
    return fig


def _steps_per_rollout(data: dict):
    fig, ax = plt.subplots(figsize=(7, 4))
    if data["steps_per_rollout"]:
        ax.bar([r["num_steps"] for r in data["steps_per_rollout"]], [r["rollouts"] for r in data["steps_per_rollout"]],
               color="#457b9d")
        ax.set_xlabel("steps")
        ax.set_ylabel("rollouts")
    else:
        _empty(ax, "rollouts")
    ax.set_title("Steps per rollout")
    return fig


def _first_error_positions(data: dict):
    fig, ax = plt.subplots(figsize=(8, 4))
    if data["first_error_positions"]:
        labelers = sorted({r["labeler"] for r in data["first_error_positions"]})
        positions = sorted({r["first_error_step"] for r in data["first_error_positions"]})
        width = 0.8 / len(labelers)
        for k, name in enumerate(labelers):
            count = {r["first_error_step"]: r["rollouts"] for r in data["first_error_positions"] if r["labeler"] == name}
            ax.bar([x + k * width - 0.4 + width / 2 for x in positions], [count.get(x, 0) for x in positions],
                   width=width, label=name)
        ax.set_xticks(positions)
        ax.set_xlabel("first wrong step (-1 = no error)")
        ax.set_ylabel("rollouts")
        legend_outside(ax)
    else:
        _empty(ax, "labeled rollouts")
    ax.set_title("First-error positions per labeler")
    return fig


def _agreement_kappa(data: dict):
    fig, ax = plt.subplots(figsize=(8, 4))
    if data["agreement"]:
        pairs = data["agreement"]
        names = [f"{r['labeler_a']}\n{r['labeler_b']}" for r in pairs]
        x = range(len(pairs))
        ax.bar([i - 0.2 for i in x], [r["agreement"] for r in pairs], width=0.4, color="#8ecae6", label="agreement")
        ax.bar([i + 0.2 for i in x], [r["kappa"] if r["kappa"] is not None else math.nan for r in pairs], width=0.4,
               color="#023047", label="Cohen's kappa")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(list(x), names, fontsize=7)
        ax.set_ylim(min(-0.1, min((r["kappa"] or 0) for r in pairs) - 0.05), 1.05)
        legend_outside(ax)
    else:
        _empty(ax, "steps labeled by two labelers")
    ax.set_title("Agreement between labelers (hard labels)")
    return fig


def _calibration_plot(data: dict):
    fig, ax = plt.subplots(figsize=(7, 5))
    bins = data["calibration"]["bins"]
    if bins:
        for name in sorted({b["labeler"] for b in bins}):
            mine = [b for b in bins if b["labeler"] == name]
            ax.plot([b["mean_value"] for b in mine], [b["reference_good"] for b in mine], marker="o", label=name)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfectly calibrated")
        ax.set_xlabel("labeler value (binned mean)")
        ax.set_ylabel("share good by the reference (true first error)")
        legend_outside(ax)
    else:
        _empty(ax, "reference labels (true_first_error) to calibrate against")
    ax.set_title("Calibration against the reference")
    return fig


def _cost_per_kept_step(data: dict):
    fig, ax = plt.subplots(figsize=(8, 4))
    cost = [c for c in data["cost_per_kept_step"] if c["tokens_per_kept_step"] is not None]
    if cost:
        x = range(len(cost))
        ax.bar(list(x), [c["tokens_per_kept_step"] for c in cost], color="#219ebc", label="this run")
        ax.plot(list(x), [c["accumulated_tokens_per_kept_step"] for c in cost], color="#fb8500", marker="o",
                label="accumulated over runs")
        ax.set_xticks(list(x), [c["run_id"] for c in cost], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("tokens paid per kept step")
        legend_outside(ax)
    else:
        _empty(ax, "runs with a cost table and kept steps")
    ax.set_title("Cost per kept step, night by night")
    return fig


PLOTS = {"label_balance_by_step": _label_balance_by_step, "steps_per_rollout": _steps_per_rollout,
         "first_error_positions": _first_error_positions, "agreement_kappa": _agreement_kappa,
         "calibration": _calibration_plot, "cost_per_kept_step": _cost_per_kept_step}


def export_rollout_ids(export_dir: str | Path) -> list[str]:
    """The rollouts of a written export (its stepwise and processbench rows)."""
    import pyarrow.parquet as pq

    root = Path(export_dir)
    if not (root / "export.json").exists():
        raise FileNotFoundError(f"{root} is not a prm-data export (no export.json)")
    ids: set[str] = set()
    for fmt in ("stepwise", "processbench"):
        for f in sorted((root / fmt).glob("*.parquet")):
            ids.update(pq.read_table(f, columns=["rollout_id"]).column("rollout_id").to_pylist())
    return sorted(ids)
