"""A run's report folder: PNG plots of label balance, first errors, MC values, agreement and cost.

`run_figures` builds the laid-out figures (tests/test_report_legends.py checks that no legend
covers a bar), `write_report` saves them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prm_data.config import RunConfig  # noqa: E402
from prm_data.labelers.registry import spec, with_role  # noqa: E402
from prm_data.run_warehouse import for_run  # noqa: E402
from prm_data.warehouse import Warehouse  # noqa: E402
from prm_data.warehouses import open_warehouse  # noqa: E402
from prm_data.warehouse_report import laid_out, legend_outside, save_figure  # noqa: E402


def _by_labeler(table: pa.Table, column: str) -> dict[str, np.ndarray]:
    """`column` of each row, grouped by the row's labeler (first-seen order), as arrays: no Python object
    per row (a 12,000-problem run plots 860k Monte Carlo values)."""
    labelers = table.column("labeler")
    return {name: table.filter(pc.equal(labelers, name)).column(column).to_numpy()
            for name in pc.unique(labelers).to_pylist()}


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def write_report(config: RunConfig, run_id: str, agreement: list[dict], costs: list[dict] | None = None,
                 sanity: dict | None = None) -> list[str]:
    """The run's PNGs in `reports_dir/<run id>/`; see `run_figures` for the arguments."""
    wh = for_run(open_warehouse(config.warehouse), run_id)  # reads this run's shards only (issue 21)
    figures = run_figures(wh, run_id, config.aggregate.policy, agreement, costs, sanity)
    out = Path(config.reports_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, out / f"{name}.png") for name, fig in figures.items()]


def run_figures(wh: Warehouse, run_id: str, policy: str, agreement: list[dict], costs: list[dict] | None = None,
                sanity: dict | None = None) -> dict:
    """One laid-out Figure per plot of the run, by file name (without .png). `policy` is the run's aggregation
    policy, `agreement` the run summary's labeler pairs (labeler_a < labeler_b, agreement), `costs` its cost
    table (`prm_data.pipeline.summary.cost_table`: one row per purpose paid for), `sanity` its check against
    exact arithmetic (`prm_data.sanity.arithmetic_sanity(...).to_dict()`)."""
    p = [run_id]
    figures = {}

    rows = wh.rows("SELECT labeler, sum(CASE WHEN hard_label THEN 1 ELSE 0 END) AS good, "
                   "sum(CASE WHEN hard_label = false THEN 1 ELSE 0 END) AS bad, "
                   "sum(CASE WHEN hard_label IS NULL THEN 1 ELSE 0 END) AS abstain "
                   "FROM step_labels WHERE run_id = ? GROUP BY labeler ORDER BY labeler", p)
    fin = wh.rows("SELECT sum(CASE WHEN label THEN 1 ELSE 0 END) AS good, "
                  "sum(CASE WHEN NOT label THEN 1 ELSE 0 END) AS bad FROM final_labels WHERE run_id = ? AND kept", p)
    if fin and (fin[0]["good"] or fin[0]["bad"]):
        rows.append({"labeler": f"final ({policy})", "good": fin[0]["good"] or 0,
                     "bad": fin[0]["bad"] or 0, "abstain": 0})
    fig, ax = plt.subplots(figsize=(7, 4))
    if rows:
        names = [r["labeler"] for r in rows]
        good = [float(r["good"] or 0) for r in rows]  # DuckDB sums arrive as Decimal; Decimal(0) is falsy:
        bad = [float(r["bad"] or 0) for r in rows]  # int 0 beside Decimal made matplotlib raise TypeError
        ab = [float(r["abstain"] or 0) for r in rows]
        ax.barh(names, good, color="#2a9d8f", label="good")
        ax.barh(names, bad, left=good, color="#e76f51", label="bad")
        ax.barh(names, ab, left=[g + b for g, b in zip(good, bad)], color="#bbbbbb", label="abstain")
        ax.set_xlabel("step labels")
        legend_outside(ax)
    else:
        _empty(ax, "step labels")
    ax.set_title("Label balance per labeler")
    figures["label_balance"] = laid_out(fig)

    by = _by_labeler(wh.query("SELECT labeler, first_error_step FROM first_error WHERE rollout_id IN "
                              "(SELECT rollout_id FROM rollouts WHERE run_id = ?)", p), "first_error_step")
    fig, ax = plt.subplots(figsize=(7, 4))
    if by:
        top = int(max(v.max() for v in by.values()))
        bins = [b - 0.5 for b in range(-1, top + 2)]
        ax.hist(list(by.values()), bins=bins, label=list(by), histtype="bar")
        ax.set_xlabel("first wrong step (-1 = no error)")
        ax.set_xticks(range(-1, top + 1))
        ax.set_ylabel("rollouts")
        legend_outside(ax)
    else:
        _empty(ax, "labeled rollouts")
    ax.set_title("First-error position")
    figures["first_error_hist"] = laid_out(fig)

    mc_labelers = with_role("mc")  # the registry's outcome estimates: MC values, search values, advantages
    by = _by_labeler(wh.query("SELECT labeler, value FROM step_labels WHERE run_id = ? AND value IS NOT NULL "
                              "AND list_contains(?, labeler)", [*p, mc_labelers]), "value")
    advantages = {n: by.pop(n) for n in list(by) if spec(n).value == "advantage"}  # in [-1, 1], not probabilities
    fig, axes = plt.subplots(1, 2 if advantages else 1, figsize=(11 if advantages else 7, 4), squeeze=False)
    ax = axes[0][0]
    if by:
        ax.hist(list(by.values()), bins=20, range=(0.0, 1.0), label=list(by))
        ax.set_xlabel("Monte Carlo value (share of completions reaching the answer)")
        ax.set_ylabel("steps")
        legend_outside(ax)
    else:
        _empty(ax, "Monte Carlo values")
    ax.set_title("Monte Carlo value distribution")
    if advantages:
        ax = axes[0][1]
        ax.hist(list(advantages.values()), bins=20, range=(-1.0, 1.0), label=list(advantages))
        ax.set_xlabel("advantage (value after the step - value before)")
        ax.set_ylabel("steps")
        legend_outside(ax)
        ax.set_title("Progress advantages")
    figures["mc_values"] = laid_out(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    if agreement:
        names = sorted({r["labeler_a"] for r in agreement} | {r["labeler_b"] for r in agreement})
        grid = [[1.0 if i == j else float("nan") for j in range(len(names))] for i in range(len(names))]
        for r in agreement:
            i, j = names.index(r["labeler_a"]), names.index(r["labeler_b"])
            grid[i][j] = grid[j][i] = r["agreement"]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        for i in range(len(names)):
            for j in range(len(names)):
                if grid[i][j] == grid[i][j]:
                    ax.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", color="w")
        fig.colorbar(im, ax=ax)
    else:
        _empty(ax, "overlapping labels")
    ax.set_title("Agreement between labelers (hard labels)")
    figures["label_agreement"] = laid_out(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    if costs:
        names = [c["purpose"] for c in costs]
        ax.bar(names, [c["prompt_tokens"] for c in costs], label="prompt tokens", color="#8ecae6")
        ax.bar(names, [c["completion_tokens"] for c in costs], bottom=[c["prompt_tokens"] for c in costs],
               label="completion tokens", color="#219ebc")
        ax.set_ylabel("tokens paid (this process)")
        ax.tick_params(axis="x", rotation=20)
        legend_outside(ax)
    else:
        _empty(ax, "paid model calls")
    ax.set_title("Cost per purpose (every paid token in one bar)")
    figures["cost_per_labeler"] = laid_out(fig)
    if sanity is not None:
        figures["agreement_with_arithmetic"] = laid_out(_sanity_plot(sanity))
    return figures


def _sanity_plot(sanity: dict):
    """Each labeler's agreement with tool verification on the steps it fully checks; warnings as the title."""
    rows = sanity.get("labelers") or []
    fig, ax = plt.subplots(figsize=(7, 4))
    if rows:
        names = [r["labeler"] for r in rows]
        y = range(len(rows))
        verified = [r["agreement_on_verified"] if r["agreement_on_verified"] is not None else 0.0 for r in rows]
        contradicted = [r["agreement_on_contradicted"] if r["agreement_on_contradicted"] is not None else 0.0
                        for r in rows]
        ax.barh([i - 0.2 for i in y], verified, height=0.4, color="#2a9d8f", label="on verified steps")
        ax.barh([i + 0.2 for i in y], contradicted, height=0.4, color="#e76f51", label="on contradicted steps")
        ax.set_yticks(list(y), names)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"agreement with exact arithmetic ({sanity['fully_checked_steps']} fully checked steps)")
        legend_outside(ax)
    else:
        _empty(ax, "steps tool verification fully checks")
    warnings = sanity.get("warnings") or []
    if warnings:
        ax.set_title("WARNING: " + warnings[0][:90] + "...", fontsize=9, color="#b00020")
    else:
        ax.set_title("Labelers against exact arithmetic")
    return fig
