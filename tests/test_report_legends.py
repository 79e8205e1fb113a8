"""No legend covers a bar: every plot of `prm-data report` and of a run's report, rendered on a realistic warehouse.

The warehouse is a real `prm-data run` of configs/sim.yaml with all its labelers, shrunk
(tests/sim_warehouse.py), so every plot has data: stacked label shares that reach 1.0, several
labelers side by side, a second axis for progress advantages, a cost table and the arithmetic check.
Each figure is drawn with matplotlib's Agg renderer as it is saved; the legend's box in display
pixels must overlap no bar's visible box (the bar clipped to its axes) and lie inside the figure.
"""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from sim_warehouse import build_sim_warehouse  # noqa: E402

from prm_data.pipeline.report import run_figures  # noqa: E402
from prm_data.warehouse_report import PLOTS, report_data, report_figures  # noqa: E402

pytestmark = pytest.mark.slow

SIM_LABELERS = ("mc_value", "omega_prm", "progress", "tool_verify", "judge_vote", "rubric")
WAREHOUSE_LEGENDS = ["label_balance_by_step", "first_error_positions", "agreement_kappa", "calibration",
                     "cost_per_kept_step"]
RUN_LEGENDS = ["label_balance", "first_error_hist", "mc_values", "cost_per_labeler", "agreement_with_arithmetic"]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    wh = build_sim_warehouse(tmp_path_factory.mktemp("legends"), problems=8, rollouts=4, labelers=SIM_LABELERS)
    (run,) = wh.rows("SELECT run_id, summary FROM runs WHERE status = 'completed'")
    summary = json.loads(run["summary"])
    made = {("warehouse", name): fig for name, fig in report_figures(report_data(wh)).items()}
    made |= {("run", name): fig for name, fig in run_figures(  # consensus: configs/sim.yaml's policy
        wh, run["run_id"], "consensus", summary["agreement"], summary["costs"], summary["sanity"]).items()}
    yield made
    for fig in made.values():
        plt.close(fig)


def drawn_boxes(fig) -> tuple[list[Bbox], list[Bbox]]:
    """(legend boxes, visible bar boxes) of a figure, in display pixels, after drawing it."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    bars = []
    for ax in fig.axes:
        clip = ax.get_window_extent(renderer)
        for patch in ax.patches:  # bar, barh and hist draw their bars as Rectangles here
            if not isinstance(patch, Rectangle):
                continue
            box = patch.get_window_extent(renderer)
            visible = Bbox.intersection(box, clip) if all(map(math.isfinite, box.extents)) else None
            if visible is not None and visible.width > 0 and visible.height > 0:
                bars.append(visible)
    return [legend.get_window_extent(renderer) for legend in legends], bars


def overlap(a: Bbox, b: Bbox) -> bool:
    both = Bbox.intersection(a, b)
    return both is not None and both.width > 0 and both.height > 0


def inside(inner: Bbox, outer: Bbox) -> bool:
    return outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1


def test_every_plot_with_a_legend_is_checked(figures):
    with_legend = {key for key, fig in figures.items() if drawn_boxes(fig)[0]}
    expected = {("warehouse", name) for name in WAREHOUSE_LEGENDS} | {("run", name) for name in RUN_LEGENDS}
    assert with_legend == expected
    assert set(PLOTS) - set(WAREHOUSE_LEGENDS) == {"steps_per_rollout"}  # one series: no legend to place
    assert len(figures["run", "mc_values"].axes) == 2  # progress advantages on their own axis, each with a legend


@pytest.mark.parametrize("key", [("warehouse", n) for n in WAREHOUSE_LEGENDS] + [("run", n) for n in RUN_LEGENDS],
                         ids=lambda key: "/".join(key))
def test_no_legend_covers_a_bar_and_every_legend_is_inside_the_figure(figures, key):
    fig = figures[key]
    legends, bars = drawn_boxes(fig)
    assert legends
    if key != ("warehouse", "calibration"):  # calibration draws lines only
        assert bars
    for legend in legends:
        covered = [bar for bar in bars if overlap(legend, bar)]
        assert not covered, f"{key}: the legend {legend} covers {len(covered)} bar(s), e.g. {covered[0]}"
        assert inside(legend, fig.bbox), f"{key}: the legend {legend} is cut off by the figure's edge {fig.bbox}"
