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
- 40 problems (12 with --quick), 8 rollouts each, and OmegaPRM's pre-filter: problems whose rollouts are
  all right or all wrong are not labeled;
- baselines at their papers' settings: per-step Monte Carlo at N = 8
  (Math-Shepherd) and binary search at k = 8 (OmegaPRM); Monte Carlo at k = 4
  and k = 2 sit beside them as the equal-cost comparison for the cheaper
  methods. Every method labels the same rollouts and is scored on all of them
  (an abstention counts as a miss), so accuracies compare directly;
- the simulator's assumptions are swept, one at a time, from the default
  world (errors undone by the next step with probability 0.05, the policy as
  completer): error cancellation 0 / 0.05 / 0.15 (rollouts and completions both
  come from that world), a stronger completer (error rate 0.05), and weaker
  completers whose solve rate from scratch falls from the policy's (~0.5) to
  0.1 (Math-Shepherd uses a separate completer model and Rewarding Progress a
  separate prover; issue 16 found a 135M completer solving ~10 %). Every
  setting reports the assumptions it ran under;
- progress labels (Rewarding Progress) run with the completer as prover, in
  both label modes: advantage (a significant drop in the prover's success
  rate; with k = 8 fixed, and sampled sequentially up to max_k = 32, the
  default, or 64) and hard_estimate (Q > 0, Math-Shepherd's rule under the
  prover); the sequential rule's settings were chosen on another bank
  (`--tune`, bank seed 7; see TUNING) and are reported on this one;
- every method runs with two completer seeds (one in the sweep; fresh tree
  and client each) and its accuracy is pooled over them: methods on the same
  seed draw partly the same samples (same request keys), so one seed is one
  correlated draw, and a 2-3 point difference on one seed is noise.

Run: `python benchmarks/labeling_cost.py [--quick]` (`--tune`: the choice of the advantage rule's
settings again, into labeling_cost_tuning.json); writes
benchmarks/results/labeling_cost.json and labeling_cost.png (the default
world) and prints a table per setting and one of accuracy by setting.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from itertools import groupby
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
    ("mc_k4", label_mc_value, MCValueConfig(k=4, reuse_tree=False)),
    ("mc_k2", label_mc_value, MCValueConfig(k=2, reuse_tree=False)),
    ("mc_k8_early_stop", label_mc_value, MCValueConfig(k=8, reuse_tree=False, early_stop=True)),
    ("mc_k8_tree_reuse", label_mc_value, MCValueConfig(k=8, reuse_tree=True)),
    ("mc_k8_reuse_early_stop", label_mc_value, MCValueConfig(k=8, reuse_tree=True, early_stop=True)),
    (PAPER_BINARY_SEARCH, label_omega_prm, OmegaPRMConfig(k=8, continue_search=False)),
    ("binary_search_k8_early_stop", label_omega_prm, OmegaPRMConfig(k=8, continue_search=False, early_stop=True)),
    ("binary_search_k4", label_omega_prm, OmegaPRMConfig(k=4, continue_search=False)),
    ("binary_search_k16", label_omega_prm, OmegaPRMConfig(k=16, continue_search=False)),
    ("omega_mcts", label_omega_prm, OmegaPRMConfig()),
    ("sibling", label_sibling, SiblingConfig()),
    ("progress_advantage_k8", label_progress, ProgressConfig(label_mode="advantage", max_k=8)),
    ("progress_advantage", label_progress, ProgressConfig(label_mode="advantage", max_k=32, keep_ratio=0.25)),
    ("progress_advantage_max64", label_progress, ProgressConfig(label_mode="advantage", max_k=64, keep_ratio=0.25)),
    ("progress_hard_estimate", label_progress, ProgressConfig(label_mode="hard_estimate")),
]
# How the sequential advantage rule's two settings (max_k, keep_ratio) were chosen: on a *different*
# bank (`--bank-seed 7`, completer seed 0), from max_k in {16, 32, 64} x keep_ratio in {0.25, 0.5},
# the most accurate at solve rate 0.1 whose completion tokens stayed within mc_k8's at every solve
# rate (0.1 ... the policy): max_k 32, keep_ratio 0.25. The figures reported are on the default bank
# (seed 2024); progress_advantage_max64 is the next point on the cost-accuracy curve, not a choice.
TUNING = {"bank_seed": 7, "completer_seed": 0, "grid": {"max_k": [16, 32, 64], "keep_ratio": [0.25, 0.5]},
          "rule": "most accurate at solve rate 0.1 with completion tokens <= mc_k8's at every solve rate",
          "chosen": {"max_k": 32, "keep_ratio": 0.25}}
BANK_SEED = 2024
SWEEP_METHODS = (BASELINE, "mc_k4", "mc_k2", "mc_k8_tree_reuse", PAPER_BINARY_SEARCH, "binary_search_k4",
                 "binary_search_k8_early_stop", "progress_advantage_k8", "progress_advantage",
                 "progress_advantage_max64", "progress_hard_estimate")
POLICY_ERROR_RATE = 0.15
DEFAULT_CANCEL = 0.05
# setting -> (axis it moves, world's cancel rate, completer SimBackend arguments, all methods?)
SETTINGS = {
    "default": ("default", DEFAULT_CANCEL, {"model": "sim-policy", "error_rate": POLICY_ERROR_RATE}, True),
    "stronger_completer": ("completer", DEFAULT_CANCEL, {"model": "sim-completer", "error_rate": 0.05}, True),
    "no_cancellation": ("cancellation", 0.0, {"model": "sim-policy", "error_rate": POLICY_ERROR_RATE}, False),
    "cancellation_0.15": ("cancellation", 0.15, {"model": "sim-policy", "error_rate": POLICY_ERROR_RATE}, False),
    "completer_solves_0.5": ("completer", DEFAULT_CANCEL, {"model": "sim-completer", "solve_rate": 0.5}, False),
    "completer_solves_0.3": ("completer", DEFAULT_CANCEL, {"model": "sim-completer", "solve_rate": 0.3}, False),
    "completer_solves_0.2": ("completer", DEFAULT_CANCEL, {"model": "sim-completer", "solve_rate": 0.2}, False),
    "completer_solves_0.1": ("completer", DEFAULT_CANCEL, {"model": "sim-completer", "solve_rate": 0.1}, False),
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


def run_method(rollouts, labeler, cfg, completer_backend: dict, seeds: list[int],
               completer_cfg: dict | None = None, verifiers=None) -> dict:
    """Label the rollouts once per completer seed (fresh tree and client each time); pool the results.
    `completer_cfg`: more CompleterConfig fields (code's prompt, step policy); `verifiers`: the completer's."""
    hits = total = err_hits = err_total = 0
    sums: dict[str, float] = defaultdict(float)
    per_seed, aucs = [], []
    for seed in seeds:
        client = LLMClient(SimBackend(**completer_backend))
        completer = Completer(client, cfg=CompleterConfig(seed=seed, **(completer_cfg or {})), run_id="bench",
                              verifiers=verifiers)
        start = time.perf_counter()
        labels = labeler(rollouts, completer, cfg)
        sums["seconds"] += time.perf_counter() - start
        h, n, eh, en = score(rollouts, labels)
        aucs.append(value_auc(rollouts, labels))
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
        "accuracy_on_error_free": (hits - err_hits) / (total - err_total) if total > err_total else None,
        "completion_tokens_per_labeled_step": (out["completion_tokens"] / out["labeled_steps"]
                                               if out["labeled_steps"] else None),
        "seeds": seeds,
        "value_auc": None if None in aucs else sum(aucs) / len(aucs),
    })
    return out


def value_auc(rollouts: list[RolloutSteps], labels) -> float | None:
    """Mann-Whitney AUC of the soft values: the chance that a step before the true first error has a higher
    value than one at or after it (ties count half); None without both kinds of step."""
    truth = {r.rollout_id: r.true_first_error for r in rollouts}
    pairs = sorted((l.value, truth[l.rollout_id] in (-1, None) or l.step_index < truth[l.rollout_id])
                   for l in labels if l.value is not None)
    n_good = sum(good for _, good in pairs)
    wins = bad_below = 0.0
    for _, tied in groupby(pairs, key=lambda p: p[0]):
        good = [ok for _, ok in tied]
        wins += sum(good) * (bad_below + (len(good) - sum(good)) / 2)
        bad_below += len(good) - sum(good)
    return wins / (n_good * bad_below) if n_good and bad_below else None


def run_setting(rollouts, completer_backend: dict, seeds: list[int], names=None) -> dict:
    methods = {name: run_method(rollouts, fn, cfg, completer_backend, seeds)
               for name, fn, cfg in METHODS if names is None or name in names}
    base = methods[BASELINE]
    for m in methods.values():
        per_step = m["completion_tokens_per_labeled_step"]
        m["token_reduction_vs_baseline"] = (base["completion_tokens_per_labeled_step"] / per_step) if per_step else None
    pairs = {"early_stop_mc": (BASELINE, "mc_k8_early_stop"), "tree_reuse_mc": (BASELINE, "mc_k8_tree_reuse"),
             "tree_reuse_and_early_stop_mc": (BASELINE, "mc_k8_reuse_early_stop"),
             "early_stop_binary_search": (PAPER_BINARY_SEARCH, "binary_search_k8_early_stop")}
    savings = {key: _saving(methods[a], methods[b]) for key, (a, b) in pairs.items() if a in methods and b in methods}
    completer = SimBackend(**completer_backend)
    return {"completer_model": completer.model, "completer_assumptions": completer.assumptions(),
            "methods": methods, "savings": savings, "goals": _goals(methods)}


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
    adv = methods["progress_advantage"]  # issue 16: at most MC k=8's tokens, at least its accuracy
    return {"paper_binary_search": check(PAPER_BINARY_SEARCH), "binary_search_variants_meeting_all_goals": met,
            "advantage": {"method": "progress_advantage", "accuracy": adv["first_error_accuracy"],
                          "accuracy_minus_baseline": adv["first_error_accuracy"] - base["first_error_accuracy"],
                          "tokens_over_baseline": adv["completion_tokens"] / base["completion_tokens"]}}


def _rollouts(count: int, cancel_rate: float, bank_seed: int = BANK_SEED) -> tuple[list[RolloutSteps], dict]:
    problems = [p.to_row("bench") for p in generate_bank(count, seed=bank_seed, difficulty=(3, 6), ops="+-*")]
    policy = SimBackend(model="sim-policy", error_rate=POLICY_ERROR_RATE, cancel_rate=cancel_rate)
    batch = generate_rollouts(problems, LLMClient(policy), RolloutConfig(n=8, skip_uniform=True), "bench")
    rollouts = batch.for_labeling()
    return rollouts, {
        "policy_assumptions": policy.assumptions(), "problems": count, "bank_seed": bank_seed,
        "problems_labeled": count - len(batch.skipped), "rollouts_labeled": len(rollouts),
        "steps_labeled": sum(len(r.steps) for r in rollouts),
        "policy_pass_rate": sum(r["is_correct"] for r in batch.rollouts) / len(batch.rollouts),
        "error_free_rollouts": sum(r.true_first_error == -1 for r in rollouts),
        "right_answer_with_an_error": sum(r.is_correct and r.true_first_error != -1 for r in rollouts)}


def run(quick: bool = False, out_dir: Path | None = None, sweep: bool = True,
        only: list[str] | None = None, bank_seed: int = BANK_SEED) -> dict:
    """Run the benchmark; writes the JSON and the PNG (to `out_dir`) and returns the results.

    `only`: run just these settings (names of SETTINGS; "default" is always run). `bank_seed`:
    another bank of problems (7 is the one the advantage rule's settings were chosen on).
    """
    unknown = set(only or ()) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}")
    count, seeds, sweep_seeds = (12, [0], [0]) if quick else (40, [0, 1], [0])
    worlds: dict[float, tuple] = {}
    settings = {}
    for name, (axis, cancel, completer, every_method) in SETTINGS.items():
        if (not sweep and not every_method) or (only is not None and name not in {"default", *only}):
            continue
        if cancel not in worlds:
            worlds[cancel] = _rollouts(count, cancel, bank_seed)
        rollouts, facts = worlds[cancel]
        start = time.perf_counter()
        setting = run_setting(rollouts, {**completer, "cancel_rate": cancel}, seeds if every_method else sweep_seeds,
                              None if every_method else SWEEP_METHODS)
        settings[name] = {"axis": axis, **facts, **setting, "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name}: {settings[name]['seconds']} s", flush=True)
    default = settings["default"]
    results = {"quick": quick, "completer_seeds": seeds, "sweep_seeds": sweep_seeds, "bank_seed": bank_seed,
               "advantage_settings_chosen_on": TUNING,
               **{k: default[k] for k in ("problems", "problems_labeled", "rollouts_labeled", "steps_labeled",
                                          "policy_pass_rate")},
               "policy_error_rate": POLICY_ERROR_RATE, "settings": settings,
               "degradation": degradation(settings)}
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "labeling_cost.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    plot(results, out / "labeling_cost.png")
    return results


def degradation(settings: dict) -> dict:
    """method -> setting -> first-error accuracy, for the methods every setting ran."""
    common = set.intersection(*(set(s["methods"]) for s in settings.values()))
    return {m: {name: round(s["methods"][m]["first_error_accuracy"], 4) for name, s in settings.items()}
            for m in METHODS_ORDER if m in common}


METHODS_ORDER = [name for name, _, _ in METHODS]


def tune(out_dir: Path | None = None) -> dict:
    """Re-run the choice of the advantage rule's settings on the tuning bank (TUNING); writes
    labeling_cost_tuning.json: accuracy and tokens of every grid point and of mc_k8 per setting."""
    rollouts, _ = _rollouts(40, DEFAULT_CANCEL, TUNING["bank_seed"])
    grid = {f"max_k={m},keep_ratio={r}": ProgressConfig(max_k=m, keep_ratio=r)
            for m in TUNING["grid"]["max_k"] for r in TUNING["grid"]["keep_ratio"]}
    rows: dict = {}
    for name, (axis, cancel, completer, _) in SETTINGS.items():
        if name != "default" and not name.startswith("completer_solves"):
            continue
        backend, seeds = {**completer, "cancel_rate": cancel}, [TUNING["completer_seed"]]
        runs = {BASELINE: run_method(rollouts, label_mc_value, MCValueConfig(k=8, reuse_tree=False), backend, seeds)}
        runs |= {point: run_method(rollouts, label_progress, cfg, backend, seeds) for point, cfg in grid.items()}
        rows[name] = {m: {"accuracy": r["first_error_accuracy"], "completion_tokens": r["completion_tokens"]}
                      for m, r in runs.items()}
        print(name, {m: (round(v["accuracy"], 3), round(v["completion_tokens"])) for m, v in rows[name].items()},
              flush=True)
    within = [p for p in grid
              if all(r[p]["completion_tokens"] <= r[BASELINE]["completion_tokens"] for r in rows.values())]
    chosen = max(within, key=lambda p: rows["completer_solves_0.1"][p]["accuracy"]) if within else None
    out = {"tuning": TUNING, "settings": rows, "within_baseline_tokens": within, "chosen": chosen,
           "matches_the_settings_in_use": chosen == "max_k={max_k},keep_ratio={keep_ratio}".format(**TUNING["chosen"])}
    path = (Path(out_dir) if out_dir is not None else RESULTS) / "labeling_cost_tuning.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, sort_keys=True))
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = {n: s for n, s in results["settings"].items() if SETTINGS[n][3]}
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 5.8), sharey=True, squeeze=False)
    axes = axes[0]
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
        ax.set_title(f"{name} ({_assumed(setting)})", fontsize=9)
        ax.set_xlabel("completion tokens per labeled step (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("first-error accuracy (95% CI)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("Monte Carlo labelers on the synthetic policy: first-error accuracy vs labeling cost")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _assumed(setting: dict) -> str:
    c = setting["completer_assumptions"]
    strength = f"solve rate {c['solve_rate']}" if "solve_rate" in c else f"error rate {c['error_rate']}"
    return f"completer {c['model']} {strength}, cancel {c['cancel_rate']}"


def print_table(results: dict) -> None:
    for name, setting in results["settings"].items():
        print(f"\n== {name}: {_assumed(setting)}; {setting['rollouts_labeled']} rollouts "
              f"({setting['error_free_rollouts']} error-free, {setting['right_answer_with_an_error']} with the right "
              f"answer despite an error), policy pass rate {setting['policy_pass_rate']:.2f}")
        print(f"{'method':30s} {'accuracy':>9s} {'95% CI':>13s} {'erroneous':>9s} {'error-free':>10s} "
              f"{'tok/step':>9s} {'vs base':>8s}")
        for method, m in setting["methods"].items():
            lo, hi = m["accuracy_ci95"]
            print(f"{method:30s} {m['first_error_accuracy']:9.3f}   {lo:.3f}-{hi:.3f} "
                  f"{m['accuracy_on_erroneous'] or 0:9.3f} {m['accuracy_on_error_free'] or 0:10.3f} "
                  f"{m['completion_tokens_per_labeled_step']:9.1f} {m['token_reduction_vs_baseline']:7.1f}x")
        for key, s in setting["savings"].items():
            print(f"saving {key:30s} {s['fraction_saved']:6.1%} of tokens "
                  f"(accuracy {s['accuracy_change']:+.3f})")
    names = list(results["settings"])
    print("\n== first-error accuracy by setting (every rollout scored; abstentions are misses)")
    print(f"{'method':30s} " + " ".join(f"{n[:14]:>14s}" for n in names))
    for method, row in results["degradation"].items():
        print(f"{method:30s} " + " ".join(f"{row[n]:14.3f}" for n in names))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 problems and one completer seed instead of 40 and two")
    parser.add_argument("--no-sweep", action="store_true", help="only the default and stronger-completer settings")
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings (and default)")
    parser.add_argument("--bank-seed", type=int, default=BANK_SEED,
                        help=f"bank of problems (default {BANK_SEED}; 7: the advantage rule's tuning bank)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the JSON and PNG go (default results/)")
    parser.add_argument("--tune", action="store_true", help="only re-run the choice of the advantage rule's settings "
                        "on the tuning bank (writes labeling_cost_tuning.json)")
    args = parser.parse_args()
    if args.tune:
        print(json.dumps(tune(args.out_dir)["chosen"]))
        raise SystemExit(0)
    print_table(run(quick=args.quick, sweep=not args.no_sweep, only=args.only, bank_seed=args.bank_seed,
                    out_dir=args.out_dir))
