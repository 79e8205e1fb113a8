"""Reference matching (zero model calls) beside Monte Carlo and OmegaPRM binary search.

Three measurements (see docs/labeling.md, "Reference matching", and docs/code.md, "Labeling code: measured"):

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
2. **The code simulator** (prm_data/llm/sim_code.py at its defaults, as policy and completer; 24
   code-bank problems of 3-5 blocks, seed 0; 8 problems and one seed with --quick): the same
   comparison with the code completer (solve_code.v1, code_block steps) and `verpo` k = 8 added;
   the binary-search/MC cost ratios of math and code side by side; the zero-call labelers' misses
   by how and by the simulator's bug kind at the first error; and, on one seed, the world with
   `fix_rate` 0.05 (a wrong solution redefined correctly 1 time in 20: the analog of math's error
   cancellation), a sensitivity check. Completions are graded by the sandboxed code verifier, each
   distinct program once (memo_verifiers.py: labels, calls and tokens unchanged).
3. **Problem sets with known truth** (`--problem-set`, default both of benchmarks/data/:
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

from labeling_cost import (BANK_SEED, DEFAULT_CANCEL, POLICY_ERROR_RATE, _rollouts, predicted_first_error,  # noqa: E402
                           run_method, score, value_auc)
from memo_verifiers import MemoVerifiers  # noqa: E402

from prm_data.failures import FailureLog  # noqa: E402
from prm_data.labelers.mc_value import MCValueConfig, label_mc_value  # noqa: E402
from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm  # noqa: E402
from prm_data.labelers.reference_match import ReferenceMatchConfig, label_reference_match  # noqa: E402
from prm_data.labelers.tool_verify import label_tool_verify  # noqa: E402
from prm_data.labelers.verpo import VeRPOConfig, label_verpo  # noqa: E402
from prm_data.llm.client import LLMClient  # noqa: E402
from prm_data.llm.sim import SimBackend  # noqa: E402
from prm_data.records import wilson_interval  # noqa: E402
from prm_data.rollouts import RolloutConfig, RolloutSteps, generate_rollouts  # noqa: E402
from prm_data.sources import load_problems  # noqa: E402
from prm_data.sources.bank import generate_bank  # noqa: E402
from prm_data.sources.code_bank import parse_code_question  # noqa: E402
from prm_data.llm.sim_code import SimCoderParams, place_steps  # noqa: E402
from prm_data.steps import join_steps  # noqa: E402

RESULTS = HERE / "results"
HUMAN_SET = HERE / "data" / "human_math_solutions.json"
HUMAN_CODE_SET = HERE / "data" / "human_code_solutions.json"
SAMPLED = [("mc_k8", label_mc_value, MCValueConfig(k=8, reuse_tree=False)),
           ("binary_search_k8", label_omega_prm, OmegaPRMConfig(k=8, continue_search=False))]
# The code simulator at its defaults (docs/code.md: bug_rate 0.12, the three kinds at equal shares, no plan,
# no fix), as policy and completer; code-bank problems of 3-5 blocks (configs/code_sim.yaml's bank), seed 0.
CODE_BANK_BLOCKS, CODE_BANK_SEED = "3-5", 0
CODE_COMPLETER = {"model": "sim-coder"}
CODE_STEPS = {"prompt_version": "solve_code.v1", "step_policy": "code_block"}
CODE_FIX_RATE_SWEEP = 0.05
CODE_SAMPLED = [*SAMPLED, ("verpo_k8", label_verpo, VeRPOConfig(k=8))]
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
            "value_auc": value_auc(rollouts, labels),  # values 1 good, 0 bad: abstentions left out
            "calls": sum(l.calls for l in labels), "completion_tokens": sum(l.completion_tokens for l in labels),
            "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),  # CPU: this process, not the sandbox's
            "verdicts": verdicts, "misses": miss_kinds(rollouts, labels), "failures": len(failures.rows)}



def miss_kinds(rollouts: list[RolloutSteps], labels) -> dict[str, list[str]]:
    """The ids of the missed rollouts by how: an abstention before any bad step, a bad label before the true first
    error (early), after it (late), or none at all on a rollout with an error (missed)."""
    by_rollout: dict[str, list] = {}
    for label in labels:
        by_rollout.setdefault(label.rollout_id, []).append(label)
    kinds: dict[str, list[str]] = {"abstained": [], "early": [], "late": [], "missed": []}
    for r in rollouts:
        predicted = predicted_first_error(by_rollout.get(r.rollout_id, []))
        if predicted == r.true_first_error:
            continue
        kind = ("abstained" if predicted is None else "missed" if predicted == -1
                else "early" if r.true_first_error == -1 or predicted < r.true_first_error else "late")
        kinds[kind].append(r.rollout_id)
    return kinds


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


def compare_on(rollouts: list[RolloutSteps], problems: list[dict], completer: dict, seeds: list[int],
               sampled=SAMPLED, completer_cfg: dict | None = None, verifiers=None) -> dict:
    """Every method on the same rollouts with known truth: the `sampled` ones with a `SimBackend(**completer)`
    completer per seed (labeling_cost.run_method; `completer_cfg`: more CompleterConfig fields, `verifiers`:
    the completer's), the zero-call ones once. Any simulator whose backend is a `SimBackend` and whose
    rollouts carry `true_first_error` fits: the math policy's and the code simulator's."""
    methods = {}
    steps = sum(len(r.steps) for r in rollouts)
    for name, labeler, cfg in sampled:
        start = time.process_time()
        m = run_method(rollouts, labeler, cfg, completer, seeds, completer_cfg, verifiers)
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


def code_simulator(quick: bool, fix_rate: float = 0.0, seeds: list[int] | None = None) -> dict:
    """The same comparison on the code simulator's rollouts (verpo added: it needs per-test outcomes).
    `fix_rate`: the one assumption moved from the default (0), in the policy and the completer alike."""
    count, seeds = (8, [0]) if quick else (24, seeds or [0, 1])
    problems = load_problems(f"code_bank:{count}:{CODE_BANK_BLOCKS}:{CODE_BANK_SEED}", run_id="bench")
    backend = {**CODE_COMPLETER, "coder": SimCoderParams(fix_rate=fix_rate)}
    policy, verifiers = SimBackend(**backend), MemoVerifiers()
    batch = generate_rollouts(problems, LLMClient(policy), RolloutConfig(n=8, skip_uniform=True, **CODE_STEPS),
                              "bench", verifiers)
    rollouts = batch.for_labeling()
    facts = {"policy_assumptions": policy.assumptions(), "problems": count, "bank": f"code_bank:{count}:"
             f"{CODE_BANK_BLOCKS}:{CODE_BANK_SEED}", "problems_labeled": count - len(batch.skipped),
             "rollouts_labeled": len(rollouts), "steps_labeled": sum(len(r.steps) for r in rollouts),
             "policy_pass_rate": sum(r["is_correct"] for r in batch.rollouts) / len(batch.rollouts),
             "error_free_rollouts": sum(r.true_first_error == -1 for r in rollouts),
             "truth_disagrees_with_verifier": sum((r.true_first_error == -1) != bool(r.is_correct)
                                                  for r in rollouts)}
    start = time.perf_counter()
    methods = compare_on(rollouts, problems, backend, seeds, CODE_SAMPLED, CODE_STEPS, verifiers)
    kind = first_error_kinds(rollouts, problems)
    for m in methods.values():
        if "misses" in m:
            m["misses_by_first_error_kind"] = {how: _count(kind[rid] for rid in ids)
                                               for how, ids in m["misses"].items()}
    return {**facts, "completer_assumptions": SimBackend(**backend).assumptions(), "completer_seeds": seeds,
            "methods": methods, "first_errors": first_error_steps(rollouts), "first_error_kinds": _count(kind.values()),
            "verifier_memo": verifiers.counts(), "seconds": round(time.perf_counter() - start, 1)}


def first_error_kinds(rollouts: list[RolloutSteps], problems: list[dict]) -> dict[str, str]:
    """rollout id -> the kind of bug at its true first error (the simulator's own reading of the step:
    off_by_one, wrong_operator, wrong_variable), "none" for a bug-free rollout."""
    by_id = {p["problem_id"]: parse_code_question(p["question"]) for p in problems}
    out = {}
    for r in rollouts:
        if r.true_first_error == -1:
            out[r.rollout_id] = "none"
            continue
        states = place_steps(by_id[r.problem_id], join_steps(list(r.steps), "code_block"))
        out[r.rollout_id] = states[r.true_first_error].kind
    return out


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items()))


def first_error_steps(rollouts: list[RolloutSteps]) -> dict[str, int]:
    """Rollouts by the step of their true first error ("none": bug-free)."""
    by_step: dict[str, int] = {}
    for r in rollouts:
        key = "none" if r.true_first_error == -1 else str(r.true_first_error)
        by_step[key] = by_step.get(key, 0) + 1
    return dict(sorted(by_step.items()))


def cost_ratios(results: dict) -> dict:
    """Binary search's calls and completion tokens over Monte Carlo's, per domain (same process, same code)."""
    out = {}
    for domain, key in (("math", "synthetic"), ("code", "code_simulator")):
        m = results[key]["methods"]
        out[domain] = {what: m["binary_search_k8"][what] / m["mc_k8"][what] for what in ("calls", "completion_tokens")}
    return out


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
    results = {"quick": quick, "synthetic": synthetic(quick), "code_simulator": code_simulator(quick),
               "problem_sets": {Path(p).stem: problem_set(Path(p)) for p in problem_sets}}
    # the code analog of the math world's error cancellation: a wrong solution is followed by a corrected
    # redefinition 1 time in 20 (one seed: a sensitivity check beside the default world, not a second result)
    results["code_simulator_fix_0.05"] = code_simulator(quick, fix_rate=CODE_FIX_RATE_SWEEP, seeds=[0])
    results["cost_ratios_binary_search_over_mc"] = cost_ratios(results)
    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference_match.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    return results


def print_tables(results: dict) -> None:
    syn = results["synthetic"]
    print(f"== synthetic policy {syn['policy_assumptions']}, completer {syn['completer_assumptions']}: "
          f"{syn['rollouts_labeled']} rollouts, {syn['steps_labeled']} steps, {syn['error_free_rollouts']} error-free")
    _table(syn["methods"])
    for code in (results["code_simulator"], results["code_simulator_fix_0.05"]):
        print(f"\n== code simulator {code['policy_assumptions']} on {code['bank']}: {code['rollouts_labeled']} "
              f"rollouts, {code['steps_labeled']} steps, {code['error_free_rollouts']} error-free; first errors by "
              f"step {code['first_errors']}, by kind {code['first_error_kinds']}; verifier {code['verifier_memo']}")
        _table(code["methods"])
        rm = code["methods"]["reference_match"]
        print("reference_match misses by first-error kind:", rm["misses_by_first_error_kind"])
    print("\nbinary search / MC k=8:", {d: {k: round(v, 4) for k, v in r.items()}
                                       for d, r in results["cost_ratios_binary_search_over_mc"].items()})
    for ps in results["problem_sets"].values():
        print(f"\n== {ps['path']}: {ps['solutions']} solutions of {ps['problems']} problems, {ps['steps']} steps, "
              f"{ps['error_free_solutions']} error-free")
        _table(ps["methods"])


def _table(methods: dict) -> None:
    print(f"{'method':38s} {'accuracy':>8s} {'95% CI':>13s} {'coverage':>8s} {'step acc':>8s} {'calls':>7s} "
          f"{'tokens':>8s} {'AUC':>6s} {'cpu s':>7s} {'wall s':>7s}")
    for name, m in methods.items():
        lo, hi = m["accuracy_ci95"]
        step_acc, auc = m.get("labeled_step_accuracy_to_first_error"), m.get("value_auc")
        print(f"{name:38s} {m['first_error_accuracy']:8.3f}   {lo:.3f}-{hi:.3f} {m['coverage']:8.3f} "
              f"{'' if step_acc is None else f'{step_acc:.3f}':>8s} {m['calls']:7.0f} {m['completion_tokens']:8.0f} "
              f"{'' if auc is None else f'{auc:.3f}':>6s} {m['cpu_seconds']:7.2f} "
              f"{m.get('wall_seconds', m.get('seconds', float('nan'))):7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 problems and one completer seed (default 40, two)")
    parser.add_argument("--problem-set", type=Path, nargs="+", default=[HUMAN_SET, HUMAN_CODE_SET],
                        help="problem sets with known truth (JSON; default: the two hand-labeled sets)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the JSON goes (default results/)")
    args = parser.parse_args()
    print_tables(run(args.quick, tuple(args.problem_set), args.out_dir))
