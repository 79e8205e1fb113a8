"""Tool verification, judge voting, consensus filtering, rubrics and probes, on the synthetic policy.

The synthetic policy (prm_data/llm/sim.py) knows the true first error of every
solution it writes and the kind of error it injected; the synthetic judges are
right per verdict with a set probability, and the simulator's other
assumptions (error cancellation, judge correlation, rubric adherence, the
rate at which probes fool a judge) are named parameters, swept here and
reported with every section. Measured, with the tokens each spent:

1. tool verification: share of injected first errors caught, by kind (wrong
   arithmetic; previous result copied wrongly; wrong start value / operand read
   from the question, which needs the opt-in question-value check) and over
   all of them, and false alarms on correct steps. No model calls.
2. judges: step accuracy of 1, 3 and 5 judges (0.7-accurate each) under
   majority vote, per-step and first-error formats, and Fleiss' kappa, for
   independent judges (theory: 0.70, 0.784, 0.837) and for judges whose
   errors share a step difficulty (judge_correlation 0.3 and 0.5, the default).
3. consensus filtering (Qwen2.5-Math-PRM) against Monte Carlo at the same k
   (k = 8, Math-Shepherd's N; and k = 2): every policy's first-error accuracy
   on the rollouts it keeps, Monte Carlo alone on exactly those rollouts, and
   Monte Carlo alone keeping the same share by its own confidence (equal kept
   share), with the kept share beside each; swept over error cancellation and
   judge correlation.
4. rubrics: one judge without a rubric, with the problem's reference rubric,
   with only its final-answer rule and principles, and with another problem's
   rubric, at rubric_adherence 0.5 (default) and 0.8: the effect comes from
   what the rubric says.
5. probes: acceptance share and verdict (trusted / refused) of judges fooled
   by degenerate solutions at rates from 0 to 1.

Run: `python benchmarks/judging.py [--quick]`; prints a table and writes
benchmarks/results/judging.json. `run(quick)` returns the same dict.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

from prm_data.aggregate import AggregateConfig, aggregate, first_errors
from prm_data.labelers.agreement import majority_accuracy
from prm_data.labelers.judge_probes import JudgeProbeConfig, run_probes
from prm_data.labelers.judge_vote import JudgeSpec, JudgeVoteConfig, judge_solutions
from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.rubric import RubricProblem, generate_rubrics, label_with_rubrics
from prm_data.labelers.sim_truth import error_kind, problem_of, sim_rollouts
from prm_data.labelers.tool_verify import ToolVerifyConfig, label_tool_verify, verdict_of
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.trees.sampling import Completer

RESULTS = Path(__file__).resolve().parent / "results"


def _tokens(labels) -> int:
    return sum(l.prompt_tokens + l.completion_tokens for l in labels)


def tool_verification(quick: bool) -> dict:
    policy = SimBackend(model="sim-policy", error_rate=0.3)
    rollouts = sim_rollouts(60 if quick else 300, 4 if quick else 8, error_rate=0.3, seed=1, difficulty=(2, 6),
                            backend=policy)
    out = {"rollouts": len(rollouts), "assumptions": policy.assumptions()}
    for name, config in (("default", ToolVerifyConfig()), ("question_values", ToolVerifyConfig(check_question_values=True))):
        start = time.perf_counter()
        labels = label_tool_verify([r.solution for r in rollouts], config)
        seconds = time.perf_counter() - start
        verdict = {(l.rollout_id, l.step_index): verdict_of(l) for l in labels}
        caught, injected = Counter(), Counter()
        false_alarms = correct = 0
        for r in rollouts:
            for i in range(len(r.solution.steps)):
                v = verdict[(r.solution.rollout_id, i)]
                if r.step_is_good(i):
                    correct += 1
                    false_alarms += v == "contradicted"
                elif i == r.true_first_error:
                    kind = error_kind(problem_of(r.solution), r.solution.steps, i)
                    if kind == "copy" and i == 0:
                        kind = "start_value"  # the start copied wrongly from the question
                    injected[kind] += 1
                    caught[kind] += v == "contradicted"
        out[name] = {
            "catch_rate": {k: round(caught[k] / injected[k], 4) for k in sorted(injected)},
            "catch_rate_all_first_errors": round(sum(caught.values()) / max(1, sum(injected.values())), 4),
            "injected": dict(sorted(injected.items())),
            "false_alarm_rate": round(false_alarms / correct, 4), "correct_steps": correct,
            "tokens": _tokens(labels), "seconds": round(seconds, 2)}
    return out


def _step_accuracy(labels, truth) -> float:
    return sum(l.hard_label == truth[l.rollout_id].step_is_good(l.step_index) for l in labels) / len(labels)


CORRELATIONS = (0.0, 0.3, 0.5)


def judges(quick: bool) -> dict:
    rollouts = sim_rollouts(120 if quick else 600, 4, error_rate=0.25, seed=7, difficulty=(3, 7))
    truth = {r.solution.rollout_id: r for r in rollouts}
    solutions = [r.solution for r in rollouts]
    out = {"rollouts": len(rollouts), "steps": sum(len(s.steps) for s in solutions), "by_correlation": {}}
    for rho in CORRELATIONS:
        backends = {f"judge{i}": SimBackend(model=f"sim-judge-{i}", judge_accuracy=0.7, judge_correlation=rho)
                    for i in range(5)}
        clients = {name: LLMClient(b) for name, b in backends.items()}
        row = {"assumptions": backends["judge0"].assumptions()}
        for mode in ("per_step", "first_error"):
            for n in (1, 3, 5):
                specs = tuple(JudgeSpec(name=f"judge{i}") for i in range(n))
                result = judge_solutions(solutions, {s.name: clients[s.name] for s in specs},
                                         JudgeVoteConfig(mode=mode, judges=specs), "bench")
                row[f"{mode}_{n}"] = {
                    "step_accuracy": round(_step_accuracy(result.labels, truth), 4),
                    "theory_per_step": round(majority_accuracy(0.7, n), 4),
                    "fleiss_kappa": None if result.fleiss_kappa is None else round(result.fleiss_kappa, 4),
                    "abstentions": result.abstentions, "tokens": _tokens(result.labels)}
        out["by_correlation"][str(rho)] = row
    default = out["by_correlation"][str(SimBackend.judge_correlation)]
    out.update({k: v for k, v in default.items() if k != "assumptions"})  # the default world, flat
    out["default_assumptions"] = default["assumptions"]
    return out


def _kept_accuracy(fe: dict, truth: dict, ids) -> float | None:
    ids = list(ids)
    return round(sum(fe[r] == truth[r] for r in ids) / len(ids), 4) if ids else None


def _confidence_filter(mc_labels, share: float) -> set[str]:
    """The `share` of rollouts whose least confident Monte Carlo step is most confident (MC's own filter)."""
    least: dict[str, float] = {}
    for l in mc_labels:
        least[l.rollout_id] = min(least.get(l.rollout_id, 1.0), l.confidence)
    ranked = sorted(least, key=lambda r: (-least[r], r))
    return set(ranked[: round(share * len(ranked))])


def consensus_world(quick: bool, k: int, cancel_rate: float, correlation: float) -> dict:
    policy = SimBackend(model="sim-policy", error_rate=0.2, cancel_rate=cancel_rate)
    rollouts = sim_rollouts(40 if quick else 150, 4, error_rate=0.2, seed=11, backend=policy)
    truth = {r.solution.rollout_id: r.true_first_error for r in rollouts}
    completer = SimBackend(model="sim-policy", error_rate=0.2, cancel_rate=cancel_rate)
    mc = label_mc_value([r.as_rollout_steps() for r in rollouts], Completer(LLMClient(completer)), MCValueConfig(k=k))
    specs = tuple(JudgeSpec(name=f"judge{i}") for i in range(5))
    judge_backends = [SimBackend(model=f"sim-{s.name}", judge_correlation=correlation) for s in specs]
    clients = {s.name: LLMClient(b) for s, b in zip(specs, judge_backends)}
    votes = judge_solutions([r.solution for r in rollouts], clients, JudgeVoteConfig(mode="first_error", judges=specs),
                            "bench").labels
    tool = label_tool_verify([r.solution for r in rollouts])
    mc_fe = first_errors(aggregate(mc, AggregateConfig(policy="mc_only"), "bench"))
    out = {"k": k, "rollouts": len(rollouts), "assumptions": {"policy": policy.assumptions(),
           "completer": completer.assumptions(), "judges": judge_backends[0].assumptions()},
           "mc_tokens": _tokens(mc), "judge_tokens": _tokens(votes), "tool_tokens": 0}
    for policy_name, labels in (("mc_only", mc), ("judge_only", votes), ("consensus", mc + votes),
                                ("hybrid", mc + votes), ("hybrid+tool", mc + votes + tool)):
        fe = first_errors(aggregate(labels, AggregateConfig(policy=policy_name.split("+")[0]), "bench"))
        kept_share = len(fe) / len(rollouts)
        same_share = _confidence_filter(mc, kept_share)
        out[policy_name] = {
            "first_error_accuracy": _kept_accuracy(fe, truth, fe), "kept_share": round(kept_share, 4),
            "mc_only_on_same_rollouts": _kept_accuracy(mc_fe, truth, fe),
            "mc_only_confidence_filter_same_share": _kept_accuracy(mc_fe, truth, same_share),
            "tokens": _tokens(labels)}
    return out


def consensus(quick: bool) -> dict:
    """Consensus vs Monte Carlo at the same k, swept over cancellation and judge correlation."""
    default_cancel, default_rho = SimBackend.cancel_rate, SimBackend.judge_correlation
    worlds = {"k8_default": (8, default_cancel, default_rho), "k2_default": (2, default_cancel, default_rho),
              "k8_no_cancellation": (8, 0.0, default_rho), "k8_cancellation_0.15": (8, 0.15, default_rho),
              "k8_independent_judges": (8, default_cancel, 0.0)}
    if quick:
        worlds = {k: v for k, v in worlds.items() if k in ("k8_default", "k2_default")}
    out = {name: consensus_world(quick, *args) for name, args in worlds.items()}
    out.update({k: v for k, v in out["k8_default"].items()})  # the default world, flat (MC at Math-Shepherd's N)
    return out


def rubrics(quick: bool) -> dict:
    rollouts = sim_rollouts(40 if quick else 150, 4, error_rate=0.3, seed=6)
    truth = {r.solution.rollout_id: r for r in rollouts}
    problems = {r.solution.problem_id: problem_of(r.solution) for r in rollouts}
    written = generate_rubrics([RubricProblem(pid, p.question, str(p.answer), p.reference_solution)
                                for pid, p in problems.items()], LLMClient(SimBackend(model="sim-judge")))
    by_problem = {r.problem_id: r for r in written}
    pids = sorted(by_problem)
    final_rule_only = [dataclasses.replace(r, hard_rules=r.hard_rules[-1:]) for r in written]
    another = [dataclasses.replace(by_problem[pids[(i + 1) % len(pids)]], problem_id=pid)
               for i, pid in enumerate(pids)]  # the next problem's rubric, filed under this one
    config = JudgeVoteConfig(judges=(JudgeSpec(name="judge"),))
    solutions = [r.solution for r in rollouts]
    out = {"rubrics": len(written), "rubric_tokens": sum(r.prompt_tokens + r.completion_tokens for r in written),
           "by_adherence": {}}
    for adherence in (SimBackend.rubric_adherence, 0.8):
        backend = SimBackend(model="sim-judge", rubric_adherence=adherence)
        client = {"judge": LLMClient(backend)}
        plain = judge_solutions(solutions, client, config, "bench").labels
        row = {"assumptions": backend.assumptions(),
               "plain": {"step_accuracy": round(_step_accuracy(plain, truth), 4), "tokens": _tokens(plain)}}
        for name, given in (("rubric_graded", written), ("final_answer_rule_only", final_rule_only),
                            ("another_problems_rubric", another)):
            graded = label_with_rubrics(solutions, given, client, config, "bench").labels
            row[name] = {"step_accuracy": round(_step_accuracy(graded, truth), 4), "tokens": _tokens(graded)}
        out["by_adherence"][str(adherence)] = row
    out.update({k: v for k, v in out["by_adherence"][str(SimBackend.rubric_adherence)].items()})
    return out


FOOLED_RATES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def probes(quick: bool) -> dict:
    config = JudgeProbeConfig(samples=2 if quick else 4)
    out = {"max_accept_share": config.max_accept_share, "by_fooled_rate": {}}
    for rate in FOOLED_RATES:
        backend = SimBackend(model="sim-judge", fooled_rate=rate)
        report = run_probes(LLMClient(backend), config, judge=f"fooled-{rate}")
        out["by_fooled_rate"][str(rate)] = {
            "assumptions": backend.assumptions(), "accept_share": round(report.accept_share, 4),
            "samples": report.samples, "refused": report.accept_share > config.max_accept_share,
            "tokens": report.prompt_tokens + report.completion_tokens}
    out["honest"], out["hackable"] = out["by_fooled_rate"]["0.0"], out["by_fooled_rate"]["1.0"]
    return out


def run(quick: bool = False) -> dict:
    start = time.perf_counter()
    results = {"quick": quick, "tool_verification": tool_verification(quick), "judges": judges(quick),
               "consensus": consensus(quick), "rubrics": rubrics(quick), "probes": probes(quick)}
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def table(results: dict) -> str:
    lines = []
    tv = results["tool_verification"]
    lines.append(f"tool verification ({tv['rollouts']} rollouts, 0 tokens; policy {tv['assumptions']})")
    for name in ("default", "question_values"):
        r = tv[name]
        rates = ", ".join(f"{k} {v:.1%}" for k, v in r["catch_rate"].items())
        lines.append(f"  {name:16s} caught: {rates}; all first errors {r['catch_rate_all_first_errors']:.1%}; "
                     f"false alarms {r['false_alarm_rate']:.2%} of {r['correct_steps']} correct steps")
    j = results["judges"]
    lines.append(f"judges ({j['steps']} steps, 0.7-accurate each): step accuracy by judge correlation")
    lines.append(f"  {'':14s} " + " ".join(f"rho={rho:<5}" for rho in j["by_correlation"]) + "  theory (independent)")
    for key in ("per_step_1", "per_step_3", "per_step_5", "first_error_1", "first_error_3", "first_error_5"):
        accs = " ".join(f"{row[key]['step_accuracy']:9.3f}" for row in j["by_correlation"].values())
        lines.append(f"  {key:14s} {accs}  {j[key]['theory_per_step']:.3f}")
    c = results["consensus"]
    for world in (k for k in c if k.startswith("k") and isinstance(c[k], dict) and "assumptions" in c[k]):
        w = c[world]
        a = w["assumptions"]
        lines.append(f"first-error accuracy, {world} (MC k={w['k']}, {w['rollouts']} rollouts; cancel "
                     f"{a['policy']['cancel_rate']}, judge correlation {a['judges']['judge_correlation']})")
        lines.append(f"  {'policy':12s} {'kept':>5s} {'accuracy':>9s} {'MC same rollouts':>17s} "
                     f"{'MC same share':>14s} {'tokens':>10s}")
        for key in ("mc_only", "judge_only", "consensus", "hybrid", "hybrid+tool"):
            r = w[key]
            lines.append(f"  {key:12s} {r['kept_share']:5.0%} {r['first_error_accuracy']:9.3f} "
                         f"{r['mc_only_on_same_rollouts']:17.3f} {r['mc_only_confidence_filter_same_share']:14.3f} "
                         f"{r['tokens']:10,}")
    rb = results["rubrics"]
    lines.append(f"rubrics ({rb['rubrics']} written, {rb['rubric_tokens']:,} tokens): step accuracy of one judge")
    for adherence, row in rb["by_adherence"].items():
        parts = ", ".join(f"{k} {row[k]['step_accuracy']:.3f}" for k in
                          ("plain", "rubric_graded", "final_answer_rule_only", "another_problems_rubric"))
        lines.append(f"  adherence {adherence}: {parts}")
    p = results["probes"]
    lines.append(f"judge-hacking probes (refused above {p['max_accept_share']:.0%} accepted)")
    for rate, r in p["by_fooled_rate"].items():
        lines.append(f"  fooled_rate {rate:5s} accepted {r['accept_share']:6.1%} of {r['samples']}  "
                     f"{'REFUSED' if r['refused'] else 'trusted'}")
    lines.append(f"({results['seconds']} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args()
    results = run(quick=args.quick)
    print(table(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "judging.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
