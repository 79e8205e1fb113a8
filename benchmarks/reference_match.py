"""Reference matching (zero model calls) beside Monte Carlo and OmegaPRM binary search.

Two measurements (see docs/labeling.md, "Reference matching"):

1. **The synthetic policy** (prm_data/llm/sim.py, the defaults of benchmarks/labeling_cost.py:
   bank problems of 3 to 6 operations of + - *, the policy erring with probability 0.15 per step,
   errors undone by the next step with probability 0.05, the policy as completer, OmegaPRM's
   pre-filter). The same rollouts are labeled by per-step Monte Carlo at k = 8 (Math-Shepherd),
   binary search at k = 8 (OmegaPRM), reference matching against each bank problem's
   `reference_solution` (both settings of `reproduce_from_grounded`) and, as the other
   zero-call labeler, tool verification. Reported per method: first-error accuracy (every
   rollout scored; an abstention before the first bad step is a miss), coverage (the share of
   steps given a hard label), calls, tokens and CPU seconds. The simulator's assumptions
   (`SimBackend.assumptions()`) are stored with the figures; its parameters are the defaults
   of labeling_cost.py, not chosen for this benchmark.
2. **Problem sets with known truth** (`--problem-set`, default both of benchmarks/data/:
   human_math_solutions.json, hand-written problems with GSM8K-style annotated references and
   solutions in prose, equations, LaTeX, markdown and GSM8K annotations; human_code_solutions.json,
   hand-written code problems with unit tests, a reference as fenced steps and solutions; the true
   first error of every solution labeled by hand). No sampler can continue these solutions, so only
   the zero-call labelers run. Any set in this format runs the same way: problems rows (code ones
   with `metadata.outcome`), each with `solutions` (steps, true first error, final correctness).

Run: `python benchmarks/reference_match.py [--quick] [--problem-set FILE ...]`; writes
benchmarks/results/reference_match.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from labeling_cost import BANK_SEED, DEFAULT_CANCEL, POLICY_ERROR_RATE, _rollouts, run_method, score  # noqa: E402

from prm_data.failures import FailureLog  # noqa: E402
from prm_data.labelers.mc_value import MCValueConfig, label_mc_value  # noqa: E402
from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm  # noqa: E402
from prm_data.labelers.reference_match import ReferenceMatchConfig, label_reference_match  # noqa: E402
from prm_data.labelers.tool_verify import label_tool_verify  # noqa: E402
from prm_data.llm.sim import SimBackend  # noqa: E402
from prm_data.records import wilson_interval  # noqa: E402
from prm_data.rollouts import RolloutSteps  # noqa: E402
from prm_data.sources.bank import generate_bank  # noqa: E402

RESULTS = HERE / "results"
HUMAN_SET = HERE / "data" / "human_math_solutions.json"
HUMAN_CODE_SET = HERE / "data" / "human_code_solutions.json"
SAMPLED = [("mc_k8", label_mc_value, MCValueConfig(k=8, reuse_tree=False)),
           ("binary_search_k8", label_omega_prm, OmegaPRMConfig(k=8, continue_search=False))]
ZERO_CALL = {
    "reference_match": lambda rollouts, problems, failures: label_reference_match(
        rollouts, problems, ReferenceMatchConfig(), failures),
    "reference_match_shared_operand_only": lambda rollouts, problems, failures: label_reference_match(
        rollouts, problems, ReferenceMatchConfig(reproduce_from_grounded=False), failures),
    "tool_verify": lambda rollouts, problems, failures: label_tool_verify(rollouts, failures=failures),
}


def zero_call_method(name: str, rollouts: list[RolloutSteps], problems: list[dict]) -> dict:
    """Label with a zero-call labeler; the same figures as labeling_cost.run_method, and coverage."""
    failures = FailureLog("bench")
    start, wall = time.process_time(), time.perf_counter()
    labels = ZERO_CALL[name](rollouts, problems, failures)
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    hits, total, err_hits, err_total = score(rollouts, labels)
    steps = sum(len(r.steps) for r in rollouts)
    labeled = sum(l.hard_label is not None for l in labels)
    verdicts: dict[str, int] = {}
    for l in labels:
        verdict = l.evidence.get("verdict", "")
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return {"first_error_accuracy": hits / total, "accuracy_ci95": list(wilson_interval(hits, total)),
            "accuracy_on_erroneous": err_hits / err_total if err_total else None,
            "accuracy_on_error_free": (hits - err_hits) / (total - err_total) if total > err_total else None,
            "coverage": labeled / steps if steps else None, "labeled_steps": labeled, "steps": steps,
            "labeled_step_accuracy_to_first_error": _step_accuracy(rollouts, labels),
            "calls": sum(l.calls for l in labels), "completion_tokens": sum(l.completion_tokens for l in labels),
            "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),  # CPU: this process, not the sandbox's
            "verdicts": verdicts, "failures": len(failures.rows)}


def _step_accuracy(rollouts: list[RolloutSteps], labels) -> float | None:
    """Of the labeled steps up to and including the true first error, the share labeled right
    (good before it, bad at it); steps after it are left out: their truth depends on a convention."""
    truth = {r.rollout_id: r.true_first_error for r in rollouts}
    right = n = 0
    for l in labels:
        first = truth[l.rollout_id]
        if l.hard_label is None or (first != -1 and l.step_index > first):
            continue
        n += 1
        right += l.hard_label == (first == -1 or l.step_index < first)
    return right / n if n else None


def compare_on(rollouts: list[RolloutSteps], problems: list[dict], completer: dict, seeds: list[int]) -> dict:
    """Every method on the same rollouts with known truth: the sampling ones with a `SimBackend(**completer)`
    completer per seed (labeling_cost.run_method), the zero-call ones once. Any simulator whose backend is a
    `SimBackend` and whose rollouts carry `true_first_error` fits (the code simulator's too, once merged)."""
    methods = {}
    steps = sum(len(r.steps) for r in rollouts)
    for name, labeler, cfg in SAMPLED:
        start = time.process_time()
        m = run_method(rollouts, labeler, cfg, completer, seeds)
        m["cpu_seconds"] = round((time.process_time() - start) / len(seeds), 3)
        m["coverage"] = m["labeled_steps"] / steps
        methods[name] = m
    return methods | {name: zero_call_method(name, rollouts, problems) for name in ZERO_CALL}


def synthetic(quick: bool) -> dict:
    count, seeds = (12, [0]) if quick else (40, [0, 1])
    rollouts, facts = _rollouts(count, DEFAULT_CANCEL, BANK_SEED)
    problems = [p.to_row("bench") for p in generate_bank(count, seed=BANK_SEED, difficulty=(3, 6), ops="+-*")]
    completer = {"model": "sim-policy", "error_rate": POLICY_ERROR_RATE, "cancel_rate": DEFAULT_CANCEL}
    return {**facts, "completer_assumptions": SimBackend(**completer).assumptions(), "completer_seeds": seeds,
            "methods": compare_on(rollouts, problems, completer, seeds)}


def problem_set(path: Path) -> dict:
    """A problem set with hand-labeled truth: problems rows, each with `solutions` (steps, true first error)."""
    data = json.loads(path.read_text())
    problems, rollouts, styles = [], [], {}
    for p in data["problems"]:
        problems.append({k: v for k, v in p.items() if k != "solutions"})
        for i, s in enumerate(p["solutions"]):
            rid = f"{p['problem_id']}-s{i}"
            styles[rid] = s.get("style", "")
            rollouts.append(RolloutSteps(p["problem_id"], rid, p["question"], tuple(s["steps"]),
                                         answer=str(p.get("answer")), is_correct=s.get("is_correct"),
                                         true_first_error=int(s["true_first_error"])))
    methods = {name: zero_call_method(name, rollouts, problems) for name in ZERO_CALL}
    return {"path": str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path),
            "problems": len(problems), "solutions": len(rollouts),
            "error_free_solutions": sum(r.true_first_error == -1 for r in rollouts),
            "steps": sum(len(r.steps) for r in rollouts), "methods": methods}


def run(quick: bool = False, problem_sets: tuple[Path, ...] = (HUMAN_SET, HUMAN_CODE_SET),
        out_dir: Path | None = None) -> dict:
    results = {"quick": quick, "synthetic": synthetic(quick),
               "problem_sets": {Path(p).stem: problem_set(Path(p)) for p in problem_sets}}
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference_match.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    return results


def print_tables(results: dict) -> None:
    syn = results["synthetic"]
    print(f"== synthetic policy {syn['policy_assumptions']}, completer {syn['completer_assumptions']}: "
          f"{syn['rollouts_labeled']} rollouts, {syn['steps_labeled']} steps, {syn['error_free_rollouts']} error-free")
    _table(syn["methods"])
    for ps in results["problem_sets"].values():
        print(f"\n== {ps['path']}: {ps['solutions']} solutions of {ps['problems']} problems, {ps['steps']} steps, "
              f"{ps['error_free_solutions']} error-free")
        _table(ps["methods"])


def _table(methods: dict) -> None:
    print(f"{'method':38s} {'accuracy':>8s} {'95% CI':>13s} {'coverage':>8s} {'step acc':>8s} {'calls':>7s} "
          f"{'tokens':>8s} {'cpu s':>7s} {'wall s':>7s}")
    for name, m in methods.items():
        lo, hi = m["accuracy_ci95"]
        step_acc = m.get("labeled_step_accuracy_to_first_error")
        print(f"{name:38s} {m['first_error_accuracy']:8.3f}   {lo:.3f}-{hi:.3f} {m['coverage']:8.3f} "
              f"{'' if step_acc is None else f'{step_acc:.3f}':>8s} {m['calls']:7.0f} {m['completion_tokens']:8.0f} "
              f"{m['cpu_seconds']:7.2f} {m.get('wall_seconds', float('nan')):7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 problems and one completer seed (default 40, two)")
    parser.add_argument("--problem-set", type=Path, nargs="+", default=[HUMAN_SET, HUMAN_CODE_SET],
                        help="problem sets with known truth (JSON; default: the two hand-labeled sets)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the JSON goes (default results/)")
    args = parser.parse_args()
    print_tables(run(args.quick, tuple(args.problem_set), args.out_dir))
