"""Labeling cost vs first-error accuracy of the Monte Carlo labelers, on the synthetic policy.

Every method labels the same rollouts of the synthetic policy (prm_data/llm/sim.py),
whose true first error is known, with a fresh prefix tree and its own client, so
its completion tokens are its own. The baseline is per-step Monte Carlo at k = 8
(Math-Shepherd, as distilabel does it): 8 fresh completions for every step of
every rollout. Reported per method: first-error accuracy (the first step labeled
bad must be the true first error, -1 when none) and completion tokens per
labeled step; early-stop and tree-reuse savings separately.

Settings and why (see docs/labeling.md):
- bank problems with 3 to 6 operations of + - * ; the policy errs with
  probability 0.15 per step, so about half of its rollouts are right, like the
  policies of Math-Shepherd and OmegaPRM on MATH (OmegaPRM: Gemini Pro 51%);
  division is left out because integer division maps a wrong value back onto
  the right one (14 // 4 == 12 // 4), a recovery real arithmetic does not have;
- 60 problems (12 with --quick), 8 rollouts each, and OmegaPRM's pre-filter: problems whose rollouts are
  all right or all wrong are not labeled;
- two completers, each a table: the policy itself (OmegaPRM samples its MC
  rollouts from the policy) and a stronger completer (error rate 0.05;
  Math-Shepherd uses a separate completer model and Rewarding Progress a
  separate prover).
- every method runs with three completer seeds (fresh tree and client each) and
  its accuracy is pooled over them: methods on the same seed draw partly the
  same samples (same request keys), so one seed is one correlated draw, and a
  2-3 point difference on one seed is noise.

Run: `python benchmarks/labeling_cost.py [--quick]`; writes
benchmarks/results/labeling_cost.json and labeling_cost.png.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm
from prm_data.labelers.progress import ProgressConfig, label_progress
from prm_data.labelers.sibling import SiblingConfig, label_sibling
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.records import wilson_interval
from prm_data.rollouts import RolloutConfig, RolloutSteps, generate_rollouts
from prm_data.sources.bank import generate_bank
from prm_data.trees.sampling import Completer, CompleterConfig

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "mc_k8"
PAPER_BINARY_SEARCH = "binary_search_k8"

METHODS = [  # name, labeler, config
    (BASELINE, label_mc_value, MCValueConfig(k=8, reuse_tree=False)),
    ("mc_k8_early_stop", label_mc_value, MCValueConfig(k=8, reuse_tree=False, early_stop=True)),
    ("mc_k8_tree_reuse", label_mc_value, MCValueConfig(k=8, reuse_tree=True)),
    ("mc_k8_reuse_early_stop", label_mc_value, MCValueConfig(k=8, reuse_tree=True, early_stop=True)),
    (PAPER_BINARY_SEARCH, label_omega_prm, OmegaPRMConfig(k=8, continue_search=False)),
    ("binary_search_k8_early_stop", label_omega_prm, OmegaPRMConfig(k=8, continue_search=False, early_stop=True)),
    ("binary_search_k4", label_omega_prm, OmegaPRMConfig(k=4, continue_search=False)),
    ("binary_search_k16", label_omega_prm, OmegaPRMConfig(k=16, continue_search=False)),
    ("omega_mcts", label_omega_prm, OmegaPRMConfig()),
    ("sibling", label_sibling, SiblingConfig()),
    ("progress", label_progress, ProgressConfig()),
]
COMPLETERS = {  # setting -> (model, per-step error rate)
    "policy_as_completer": ("sim-policy", 0.15),
    "stronger_completer": ("sim-completer", 0.05),
}


def predicted_first_error(labels) -> int | None:
    """First step labeled bad (-1 if none); None when an abstention comes first."""
    for label in sorted(labels, key=lambda l: l.step_index):
        if label.hard_label is None:
            return None
        if label.hard_label is False:
            return label.step_index
    return -1


def score(rollouts: list[RolloutSteps], labels) -> tuple[int, int, int, int]:
    """(hits, rollouts, hits on erroneous rollouts, erroneous rollouts)."""
    by_rollout = defaultdict(list)
    for label in labels:
        by_rollout[label.rollout_id].append(label)
    hits = [predicted_first_error(by_rollout[r.rollout_id]) == r.true_first_error for r in rollouts]
    erroneous = [h for h, r in zip(hits, rollouts) if r.true_first_error != -1]
    return sum(hits), len(hits), sum(erroneous), len(erroneous)


def run_method(rollouts, labeler, cfg, model: str, error_rate: float, seeds: list[int]) -> dict:
    """Label the rollouts once per completer seed (fresh tree and client each time); pool the results."""
    hits = total = err_hits = err_total = 0
    sums: dict[str, float] = defaultdict(float)
    per_seed = []
    for seed in seeds:
        client = LLMClient(SimBackend(model=model, error_rate=error_rate))
        completer = Completer(client, cfg=CompleterConfig(seed=seed), run_id="bench")
        start = time.perf_counter()
        labels = labeler(rollouts, completer, cfg)
        sums["seconds"] += time.perf_counter() - start
        h, n, eh, en = score(rollouts, labels)
        hits, total, err_hits, err_total = hits + h, total + n, err_hits + eh, err_total + en
        per_seed.append(h / n)
        usage = client.stats.total
        sums["completion_tokens"] += usage.completion_tokens
        sums["prompt_tokens"] += usage.prompt_tokens
        sums["calls"] += usage.calls
        sums["labeled_steps"] += sum(l.hard_label is not None for l in labels)
        sums["tree_nodes"] += len(completer.tree)
        sums["tree_nodes_with_k_samples"] += sum(node.mc_samples >= getattr(cfg, "k", 8)
                                                 for node in completer.tree.nodes.values())
        sums["early_stop_tokens_saved_estimate"] += sum(l.evidence.get("est_completion_tokens_saved", 0)
                                                        for l in labels)
        sums["reused_samples"] += sum(l.evidence.get("reused_samples", 0) for l in labels  # once per estimate
                                      if not l.evidence.get("shared_estimate") and l.evidence.get("estimated", True))
        sums["failures"] += len(completer.failures)
    out = {key: value / len(seeds) for key, value in sums.items()}  # means per run
    out.update({
        "first_error_accuracy": hits / total,
        "accuracy_ci95": list(wilson_interval(hits, total)),
        "accuracy_per_seed": per_seed,
        "accuracy_on_erroneous": err_hits / err_total if err_total else None,
        "completion_tokens_per_labeled_step": (out["completion_tokens"] / out["labeled_steps"]
                                               if out["labeled_steps"] else None),
        "seeds": seeds,
    })
    return out


def run_setting(rollouts, model: str, error_rate: float, seeds: list[int]) -> dict:
    methods = {name: run_method(rollouts, fn, cfg, model, error_rate, seeds) for name, fn, cfg in METHODS}
    base = methods[BASELINE]
    for m in methods.values():
        per_step = m["completion_tokens_per_labeled_step"]
        m["token_reduction_vs_baseline"] = (base["completion_tokens_per_labeled_step"] / per_step) if per_step else None
    savings = {
        "early_stop_mc": _saving(base, methods["mc_k8_early_stop"]),
        "tree_reuse_mc": _saving(base, methods["mc_k8_tree_reuse"]),
        "tree_reuse_and_early_stop_mc": _saving(base, methods["mc_k8_reuse_early_stop"]),
        "early_stop_binary_search": _saving(methods[PAPER_BINARY_SEARCH], methods["binary_search_k8_early_stop"]),
    }
    return {"completer_model": model, "completer_error_rate": error_rate, "methods": methods,
            "savings": savings, "goals": _goals(methods)}


def _saving(reference: dict, variant: dict) -> dict:
    saved = reference["completion_tokens"] - variant["completion_tokens"]
    return {"completion_tokens_saved": saved, "fraction_saved": saved / reference["completion_tokens"],
            "accuracy_change": variant["first_error_accuracy"] - reference["first_error_accuracy"]}


def _goals(methods: dict) -> dict:
    base = methods[BASELINE]

    def check(name: str) -> dict:
        m = methods[name]
        return {"method": name, "accuracy": m["first_error_accuracy"],
                "accuracy_minus_baseline": m["first_error_accuracy"] - base["first_error_accuracy"],
                "accuracy_at_least_95": m["first_error_accuracy"] >= 0.95,
                "accuracy_at_least_baseline": m["first_error_accuracy"] >= base["first_error_accuracy"],
                "token_reduction": m["token_reduction_vs_baseline"],
                "at_least_3x_fewer_tokens": (m["token_reduction_vs_baseline"] or 0) >= 3.0}
    binary = [n for n in methods if n.startswith("binary_search")]
    met = [n for n in binary if all(v for k, v in check(n).items() if k.startswith(("accuracy_at", "at_least")))]
    return {"paper_binary_search": check(PAPER_BINARY_SEARCH), "binary_search_variants_meeting_all_goals": met}


def run(quick: bool = False, out_dir: Path | None = None) -> dict:
    """Run the benchmark; writes the JSON and the PNG (to `out_dir`) and returns the results."""
    count, seeds = (12, [0]) if quick else (60, [0, 1, 2])
    problems = [p.to_row("bench") for p in generate_bank(count, seed=2024, difficulty=(3, 6), ops="+-*")]
    policy = LLMClient(SimBackend(model="sim-policy", error_rate=0.15))
    batch = generate_rollouts(problems, policy, RolloutConfig(n=8, skip_uniform=True), "bench")
    rollouts = batch.for_labeling()
    results = {
        "quick": quick,
        "problems": count,
        "problems_labeled": count - len(batch.skipped),
        "rollouts_labeled": len(rollouts),
        "steps_labeled": sum(len(r.steps) for r in rollouts),
        "policy_pass_rate": sum(r["is_correct"] for r in batch.rollouts) / len(batch.rollouts),
        "policy_error_rate": 0.15,
        "completer_seeds": seeds,
        "settings": {name: run_setting(rollouts, model, rate, seeds) for name, (model, rate) in COMPLETERS.items()},
    }
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "labeling_cost.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    plot(results, out / "labeling_cost.png")
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = results["settings"]
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 5.8), sharey=True)
    colors = plt.get_cmap("tab20").colors
    for ax, (name, setting) in zip(axes, settings.items()):
        for i, (method, m) in enumerate(setting["methods"].items()):
            x, y = m["completion_tokens_per_labeled_step"], m["first_error_accuracy"]
            lo, hi = m["accuracy_ci95"]
            marker = "s" if method == BASELINE else "o" if method.startswith("binary") else "^"
            ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], fmt=marker, color=colors[i % len(colors)],
                        ms=7, capsize=3, label=method)
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_title(f"{name} (completer error rate {setting['completer_error_rate']})", fontsize=10)
        ax.set_xlabel("completion tokens per labeled step (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("first-error accuracy (95% CI)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("Monte Carlo labelers on the synthetic policy: first-error accuracy vs labeling cost")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict) -> None:
    print(f"{results['rollouts_labeled']} rollouts ({results['steps_labeled']} steps) of "
          f"{results['problems_labeled']}/{results['problems']} problems; policy pass rate "
          f"{results['policy_pass_rate']:.2f}")
    for name, setting in results["settings"].items():
        print(f"\n== {name}: completer {setting['completer_model']} (error rate {setting['completer_error_rate']})")
        print(f"{'method':30s} {'accuracy':>9s} {'95% CI':>13s} {'tok/step':>9s} {'vs base':>8s} "
              f"{'calls':>7s} {'tokens':>9s}")
        for method, m in setting["methods"].items():
            lo, hi = m["accuracy_ci95"]
            print(f"{method:30s} {m['first_error_accuracy']:9.3f}   {lo:.3f}-{hi:.3f} "
                  f"{m['completion_tokens_per_labeled_step']:9.1f} {m['token_reduction_vs_baseline']:7.1f}x "
                  f"{m['calls']:7.0f} {m['completion_tokens']:9.0f}")
        for key, s in setting["savings"].items():
            print(f"saving {key:30s} {s['fraction_saved']:6.1%} of tokens "
                  f"(accuracy {s['accuracy_change']:+.3f})")
        print("goals:", json.dumps(setting["goals"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 problems and one completer seed instead of 60 and three")
    print_table(run(quick=parser.parse_args().quick))
