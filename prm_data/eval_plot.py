"""One PNG of an evaluation: ProcessBench scores (left) and best-of-N accuracy (right)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path


def plot_eval(rows: list[dict], path: str | os.PathLike) -> Path:
    """Draw `eval_results` rows: per evaluated PRM, F1 / accuracies against the threshold (lines; a
    labeler or judge is a point at no threshold, drawn on the right edge), and best-of-N bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_pb, ax_bon) = plt.subplots(1, 2, figsize=(12, 4.5))
    curves: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    points: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["benchmark"] != "processbench" or r["value"] is None or r["metric"] == "coverage":
            continue
        if r["threshold"] is None:
            points[r["evaluated"]][r["metric"]] = r["value"]
        else:
            curves[(r["evaluated"], r["metric"])].append((r["threshold"], r["value"]))
    styles = {"f1": "-", "acc_erroneous": "--", "acc_correct": ":"}
    for (name, metric), xy in sorted(curves.items()):
        xy.sort()
        ax_pb.plot([x for x, _ in xy], [y for _, y in xy], styles.get(metric, "-"), marker="o",
                   label=f"{Path(name).name} {metric}")
    for i, (name, metrics) in enumerate(sorted(points.items())):
        ax_pb.scatter([1.02 + 0.02 * i] * len(metrics), list(metrics.values()), marker="s",
                      label=f"{name} (f1 {metrics.get('f1', float('nan')):.2f})")
    ax_pb.set(title="ProcessBench", xlabel="PRM threshold", ylabel="score", ylim=(-0.02, 1.02))
    ax_pb.legend(fontsize=7)

    bars = [(f"{Path(r['evaluated']).name}\n{r['metric']}" if r["evaluated"] != "baseline" else r["metric"],
             r["value"]) for r in rows if r["benchmark"] == "best_of_n" and r["value"] is not None]
    if bars:
        ax_bon.bar(range(len(bars)), [v for _, v in bars], color="tab:blue")
        ax_bon.set_xticks(range(len(bars)), [name for name, _ in bars], fontsize=7, rotation=30, ha="right")
    ax_bon.set(title="Best-of-N reranking", ylabel="accuracy", ylim=(0, 1.02))
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
