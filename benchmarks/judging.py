"""Tool verification, judge voting, consensus filtering, rubrics and probes, on the synthetic policy.

The synthetic policy (prm_data/llm/sim.py) knows the true first error of every
solution it writes and the kind of error it injected; the synthetic judges are
right per verdict with a set probability. Measured, with the tokens each spent:

1. tool verification: share of injected errors caught, by kind (wrong
   arithmetic; previous result copied wrongly; wrong start value / operand read
   from the question, which needs the opt-in question-value check), and false
   alarms on correct steps. No model calls.
2. judges: step accuracy of 1, 3 and 5 independent 0.7-accurate judges under
   majority vote (theory: 0.70, 0.784, 0.837), per-step and first-error
   formats, and Fleiss' kappa across the judges.
3. consensus filtering (Qwen2.5-Math-PRM): first-error accuracy of Monte Carlo
   labels alone (Math-Shepherd, k = 8), of the judges alone, of the rollouts
   kept by consensus, and of the hybrid policy with tool overrides.
4. rubrics: accuracy of one judge with and without the problem's rubric in
   its prompt (the sim judge gains `rubric_bonus`, 0.1 by default).
5. probes: acceptance share of an honest and of a hackable judge on the
   judge-hacking probe set.

Run: `python benchmarks/judging.py [--quick]`; prints a table and writes
benchmarks/results/judging.json. `run(quick)` returns the same dict.
"""

from __future__ import annotations

import argparse
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
    rollouts = sim_rollouts(60 if quick else 300, 4 if quick else 8, error_rate=0.3, seed=1, difficulty=(2, 6))
    out = {"rollouts": len(rollouts)}
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
            "injected": dict(sorted(injected.items())),
            "false_alarm_rate": round(false_alarms / correct, 4), "correct_steps": correct,
            "tokens": _tokens(labels), "seconds": round(seconds, 2)}
    return out


def _step_accuracy(labels, truth) -> float:
    return sum(l.hard_label == truth[l.rollout_id].step_is_good(l.step_index) for l in labels) / len(labels)


def judges(quick: bool) -> dict:
    rollouts = sim_rollouts(120 if quick else 600, 4, error_rate=0.25, seed=7, difficulty=(3, 7))
    truth = {r.solution.rollout_id: r for r in rollouts}
    solutions = [r.solution for r in rollouts]
    clients = {f"judge{i}": LLMClient(SimBackend(model=f"sim-judge-{i}", judge_accuracy=0.7)) for i in range(5)}
    out = {"rollouts": len(rollouts), "steps": sum(len(s.steps) for s in solutions)}
    for mode in ("per_step", "first_error"):
        for n in (1, 3, 5):
            specs = tuple(JudgeSpec(name=f"judge{i}") for i in range(n))
            result = judge_solutions(solutions, {s.name: clients[s.name] for s in specs},
                                     JudgeVoteConfig(mode=mode, judges=specs), "bench")
            out[f"{mode}_{n}"] = {"step_accuracy": round(_step_accuracy(result.labels, truth), 4),
                                  "theory_per_step": round(majority_accuracy(0.7, n), 4),
                                  "fleiss_kappa": None if result.fleiss_kappa is None else round(result.fleiss_kappa, 4),
                                  "abstentions": result.abstentions, "tokens": _tokens(result.labels)}
    return out


def consensus(quick: bool) -> dict:
    rollouts = sim_rollouts(40 if quick else 150, 4, error_rate=0.2, seed=11)
    truth = {r.solution.rollout_id: r.true_first_error for r in rollouts}
    # k=2: a cheap Monte Carlo whose typical error (a good prefix whose completions all fail) is what
    # consensus with the judges filters; with the synthetic policy a wrong prefix never reaches the answer
    mc = label_mc_value([r.as_rollout_steps() for r in rollouts],
                        Completer(LLMClient(SimBackend(model="sim-policy", error_rate=0.2))), MCValueConfig(k=2))
    specs = tuple(JudgeSpec(name=f"judge{i}") for i in range(5))
    clients = {s.name: LLMClient(SimBackend(model=f"sim-{s.name}")) for s in specs}
    votes = judge_solutions([r.solution for r in rollouts], clients, JudgeVoteConfig(mode="first_error", judges=specs),
                            "bench").labels
    tool = label_tool_verify([r.solution for r in rollouts])
    out = {"rollouts": len(rollouts), "mc_tokens": _tokens(mc), "judge_tokens": _tokens(votes), "tool_tokens": 0}
    for policy, labels in (("mc_only", mc), ("judge_only", votes), ("consensus", mc + votes),
                           ("hybrid", mc + votes), ("hybrid+tool", mc + votes + tool)):
        fe = first_errors(aggregate(labels, AggregateConfig(policy=policy.split("+")[0]), "bench"))
        out[policy] = {"first_error_accuracy": round(sum(fe[r] == truth[r] for r in fe) / max(1, len(fe)), 4),
                       "kept_share": round(len(fe) / len(rollouts), 4), "tokens": _tokens(labels)}
    return out


def rubrics(quick: bool) -> dict:
    rollouts = sim_rollouts(40 if quick else 150, 4, error_rate=0.3, seed=6)
    truth = {r.solution.rollout_id: r for r in rollouts}
    problems = {r.solution.problem_id: problem_of(r.solution) for r in rollouts}
    client = LLMClient(SimBackend(model="sim-judge"))
    written = generate_rubrics([RubricProblem(pid, p.question, str(p.answer), p.reference_solution)
                                for pid, p in problems.items()], client)
    config = JudgeVoteConfig(judges=(JudgeSpec(name="judge"),))
    solutions = [r.solution for r in rollouts]
    plain = judge_solutions(solutions, {"judge": client}, config, "bench").labels
    graded = label_with_rubrics(solutions, written, {"judge": client}, config, "bench").labels
    return {"rubrics": len(written), "rubric_tokens": sum(r.prompt_tokens + r.completion_tokens for r in written),
            "plain": {"step_accuracy": round(_step_accuracy(plain, truth), 4), "tokens": _tokens(plain)},
            "rubric_graded": {"step_accuracy": round(_step_accuracy(graded, truth), 4), "tokens": _tokens(graded)}}


def probes(quick: bool) -> dict:
    config = JudgeProbeConfig(samples=2 if quick else 4)
    out = {}
    for name, backend in (("honest", SimBackend(model="sim-judge")), ("hackable", SimBackend(model="sim-judge", hackable=True))):
        report = run_probes(LLMClient(backend), config, judge=name)
        out[name] = {"accept_share": round(report.accept_share, 4), "samples": report.samples,
                     "refused": report.accept_share > config.max_accept_share,
                     "tokens": report.prompt_tokens + report.completion_tokens}
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
    lines.append(f"tool verification ({tv['rollouts']} rollouts, 0 tokens)")
    for name in ("default", "question_values"):
        r = tv[name]
        rates = ", ".join(f"{k} {v:.1%}" for k, v in r["catch_rate"].items())
        lines.append(f"  {name:16s} caught: {rates}; false alarms {r['false_alarm_rate']:.2%} "
                     f"of {r['correct_steps']} correct steps")
    j = results["judges"]
    lines.append(f"judges ({j['steps']} steps, 0.7-accurate each)")
    for key in ("per_step_1", "per_step_3", "per_step_5", "first_error_1", "first_error_3", "first_error_5"):
        r = j[key]
        lines.append(f"  {key:14s} step accuracy {r['step_accuracy']:.3f} (per-step theory {r['theory_per_step']:.3f})"
                     f"  kappa {r['fleiss_kappa']}  tokens {r['tokens']:,}")
    c = results["consensus"]
    lines.append(f"first-error accuracy ({c['rollouts']} rollouts)")
    for key in ("mc_only", "judge_only", "consensus", "hybrid", "hybrid+tool"):
        r = c[key]
        lines.append(f"  {key:12s} {r['first_error_accuracy']:.3f}  kept {r['kept_share']:.0%}  tokens {r['tokens']:,}")
    rb = results["rubrics"]
    lines.append(f"rubrics ({rb['rubrics']} written, {rb['rubric_tokens']:,} tokens)")
    for key in ("plain", "rubric_graded"):
        lines.append(f"  {key:14s} step accuracy {rb[key]['step_accuracy']:.3f}  tokens {rb[key]['tokens']:,}")
    lines.append("judge-hacking probes")
    for key, r in results["probes"].items():
        lines.append(f"  {key:9s} accepted {r['accept_share']:.0%} of {r['samples']}  "
                     f"{'REFUSED' if r['refused'] else 'trusted'}  tokens {r['tokens']:,}")
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
