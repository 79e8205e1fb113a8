"""Measure PRMs and labelers: ProcessBench F1 and best-of-N reranking accuracy.

ProcessBench (Zheng et al., 2024, "ProcessBench: Identifying Process Errors in
Mathematical Reasoning"): each solution has a label, the index of its earliest
wrong step or -1. A verifier predicts that index; the accuracy on erroneous
samples is the share of label != -1 rows predicted exactly, the accuracy on
correct samples the share of label == -1 rows predicted -1, and F1 is their
harmonic mean. A PRM predicts the first step whose score falls below a
threshold (-1 when none does); a labeler or judge is read straight from the
warehouse (`first_error` view, `judgments`).

Best-of-N (Lightman et al., 2023, "Let's Verify Step by Step"; Wang et al.,
2024, Math-Shepherd): for each problem the PRM scores its N sampled solutions,
a solution's score is the min, the last or the product of its step scores, and
the top-scored solution is picked; accuracy is the share of problems whose pick
is correct. Majority vote, the random pick (mean correctness) and the oracle
(any correct) are reported alongside as baselines.

Results become `eval_results` rows (`result_rows`, `write_eval_results`) and a
PNG (`prm_data/eval_plot.py`).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from prm_data.warehouse import Warehouse, load_query

AGGREGATIONS = ("min", "last", "product")


@dataclass(frozen=True)
class ProcessBenchScore:
    n_erroneous: int
    n_correct: int
    acc_erroneous: float | None  # None when there is no such sample
    acc_correct: float | None
    f1: float | None  # None when either accuracy is undefined


def processbench_f1(predictions: Sequence[int], labels: Sequence[int]) -> ProcessBenchScore:
    """ProcessBench's metric from predicted and true earliest-error indices (-1 = no error)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    erroneous = [p == lab for p, lab in zip(predictions, labels) if lab != -1]
    correct = [p == -1 for p, lab in zip(predictions, labels) if lab == -1]
    acc_e = sum(erroneous) / len(erroneous) if erroneous else None
    acc_c = sum(correct) / len(correct) if correct else None
    if acc_e is None or acc_c is None:
        f1 = None
    else:
        f1 = 2 * acc_e * acc_c / (acc_e + acc_c) if acc_e + acc_c > 0 else 0.0
    return ProcessBenchScore(len(erroneous), len(correct), acc_e, acc_c, f1)


def first_error_at(step_scores: Sequence[float], threshold: float) -> int:
    """The first step whose P(good) is below `threshold`; -1 when every step passes."""
    return next((i for i, s in enumerate(step_scores) if s < threshold), -1)


def processbench_from_scores(step_scores: Sequence[Sequence[float]], labels: Sequence[int],
                             threshold: float) -> ProcessBenchScore:
    return processbench_f1([first_error_at(s, threshold) for s in step_scores], labels)


def available_sources(warehouse: Warehouse) -> list[str]:
    """Every source the warehouse can be scored on: `labeler:NAME`, `labeler:NAME@VERSION`, `judge:NAME`."""
    labelers = warehouse.rows("SELECT DISTINCT labeler, labeler_version FROM step_labels ORDER BY ALL")
    judges = warehouse.rows("SELECT DISTINCT judge FROM judgments WHERE mode IN ('first_error', 'per_step') "
                            "ORDER BY judge")
    names = sorted({f"labeler:{r['labeler']}" for r in labelers})
    names += [f"labeler:{r['labeler']}@{r['labeler_version']}" for r in labelers]
    return sorted(names) + [f"judge:{r['judge']}" for r in judges]


def check_sources(warehouse: Warehouse, sources: Sequence[str]) -> None:
    """Refuse a source the warehouse holds nothing of (a typo scores nothing), naming the valid ones."""
    valid = available_sources(warehouse)
    unknown = [s for s in sources if s not in valid]
    if unknown:
        models = {r["model"]: r["judge"] for r in warehouse.rows("SELECT DISTINCT model, judge FROM judgments")}
        hints = [f"judge:{models[s[6:]]} is the judge whose model is {s[6:]}" for s in unknown
                 if s.startswith("judge:") and s[6:] in models]
        raise ValueError(f"unknown source {', '.join(map(repr, unknown))}: the warehouse has "
                         f"{', '.join(valid) or 'no step labels or judgments'}"
                         + (f" ({'; '.join(hints)})" if hints else ""))


def source_first_errors(warehouse: Warehouse, source: str) -> dict[str, int]:
    """Predicted earliest error per rollout of `labeler:NAME[@VERSION]` or `judge:NAME`.

    A judge's samples are combined by majority; a tie goes to the earliest
    index (-1 counting as after every step). A labeler with several versions
    on one rollout must be named with its version.
    """
    kind, _, name = source.partition(":")
    if kind == "labeler" and name:
        labeler, _, version = name.partition("@")
        rows = warehouse.rows(load_query("eval_labeler_first_error"),
                              {"labeler": labeler, "version": version or None})
        versions: dict[str, set] = defaultdict(set)
        for r in rows:
            versions[r["rollout_id"]].add(r["labeler_version"])
        mixed = sorted({v for vs in versions.values() if len(vs) > 1 for v in vs})
        if mixed:
            raise ValueError(f"labeler {labeler} has versions {mixed} on the same rollouts; "
                             f"name one: labeler:{labeler}@VERSION")
        return {r["rollout_id"]: int(r["first_error_step"]) for r in rows}
    if kind == "judge" and name:
        votes: dict[str, list[int]] = defaultdict(list)
        for r in warehouse.rows(load_query("eval_judge_first_error"), {"judge": name}):
            votes[r["rollout_id"]].append(int(r["first_error_step"]))
        return {rid: _majority(v) for rid, v in votes.items()}
    raise ValueError(f"unknown source {source!r}: use labeler:NAME[@VERSION] or judge:NAME")


def _majority(values: list[int]) -> int:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], math.inf if v == -1 else v))


def source_processbench(warehouse: Warehouse, source: str, rows: Sequence[dict]) -> tuple[ProcessBenchScore, int]:
    """ProcessBench score of a labeler/judge over the rows it covered, and how many it covered."""
    predicted = source_first_errors(warehouse, source)
    covered = [r for r in rows if r["rollout_id"] in predicted]
    score = processbench_f1([predicted[r["rollout_id"]] for r in covered], [r["label"] for r in covered])
    return score, len(covered)


# ------------------------------------------------------------------ best-of-N
def aggregate(step_scores: Sequence[float], how: str) -> float:
    if not step_scores:
        raise ValueError("a solution with no scored step cannot be ranked")
    if how == "min":
        return min(step_scores)
    if how == "last":
        return step_scores[-1]
    if how == "product":
        return math.prod(step_scores)
    raise ValueError(f"unknown aggregation {how!r}; use one of {AGGREGATIONS}")


def best_of_n(candidates: Sequence[dict], scores: dict[str, Sequence[float]],
              aggregations: Sequence[str] = AGGREGATIONS) -> dict[str, float]:
    """Accuracy of picking each problem's top-scored candidate, per aggregation, plus baselines.

    `candidates` are rows with problem_id, rollout_id, final_answer, is_correct;
    ties between scores go to the first candidate in rollout_id order.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for c in sorted(candidates, key=lambda c: (c["problem_id"], c["rollout_id"])):
        groups[c["problem_id"]].append(c)
    if not groups:
        raise ValueError("best-of-N needs at least one candidate")
    out: dict[str, float] = {}
    for how in aggregations:
        picks = [max(g, key=lambda c: aggregate(scores[c["rollout_id"]], how)) for g in groups.values()]
        out[f"accuracy@{how}"] = sum(bool(p["is_correct"]) for p in picks) / len(groups)
    majority = 0
    for g in groups.values():
        answers = Counter(c["final_answer"] for c in g if c["final_answer"] is not None)
        if answers:
            top = answers.most_common(1)[0][0]
            majority += any(c["is_correct"] for c in g if c["final_answer"] == top)
    out["majority_vote"] = majority / len(groups)
    out["random"] = sum(sum(bool(c["is_correct"]) for c in g) / len(g) for g in groups.values()) / len(groups)
    out["oracle"] = sum(any(c["is_correct"] for c in g) for g in groups.values()) / len(groups)
    return out


def best_of_n_candidates(warehouse: Warehouse, problem_ids: Sequence[str]) -> list[dict]:
    return warehouse.rows(load_query("eval_best_of_n_candidates"), {"problem_ids": list(problem_ids)})


# ------------------------------------------------------------------ results
def result_rows(run_id: str, evaluated: str, benchmark: str, metrics: dict[str, float | None],
                n: int | dict[str, int], threshold: float | None = None, details: dict | None = None) -> list[dict]:
    """`eval_results` rows, one per metric; `n` is each metric's denominator (one for all, or per metric)."""
    now = datetime.now(timezone.utc)
    return [{"run_id": run_id, "evaluated": evaluated, "benchmark": benchmark, "metric": metric,
             "value": value, "threshold": threshold, "n": n[metric] if isinstance(n, dict) else n,
             "details": json.dumps(details or {}, sort_keys=True), "created_at": now}
            for metric, value in metrics.items()]


def processbench_metrics(score: ProcessBenchScore) -> dict[str, float | None]:
    return {"f1": score.f1, "acc_erroneous": score.acc_erroneous, "acc_correct": score.acc_correct}


def processbench_denominators(score: ProcessBenchScore) -> dict[str, int]:
    """The rows each ProcessBench metric is computed over: F1 all scored rows, each accuracy its own class."""
    return {"f1": score.n_erroneous + score.n_correct, "acc_erroneous": score.n_erroneous,
            "acc_correct": score.n_correct}


def write_eval_results(warehouse: Warehouse, run_id: str, rows: list[dict], shard: str) -> None:
    warehouse.write_shard("eval_results", rows, run_id=run_id, shard=shard)


# ------------------------------------------------------------------ one call
def processbench_rows(dataset: str, split: str = "test") -> list[dict]:
    """The ProcessBench-style rows of an export (a split name, or `all` for every split)."""
    from prm_data.export import load_export

    dsd = load_export(dataset, "processbench")
    names = sorted(dsd) if split == "all" else [split]
    missing = [s for s in names if s not in dsd]
    if missing or not names:
        raise ValueError(f"{dataset} has no processbench split {split!r} (it has {sorted(dsd)})")
    return [row for s in names for row in dsd[s]]


def run_eval(warehouse: Warehouse, dataset: str, run_id: str, checkpoint: str | None = None,
             sources: Sequence[str] = (), thresholds: Sequence[float] = (0.5,), split: str = "test",
             rerank: bool = True, plot_path: str | None = None, batch_size: int = 16,
             run_config=None) -> list[dict]:
    """Evaluate a PRM checkpoint and/or labelers and judges; write `eval_results` (and a PNG).

    `dataset` is a prm-data export (its processbench config) or an outside
    ProcessBench-style set (a JSONL/JSON/Parquet file or a local dataset
    folder; `prm_data/eval_outside.py`). On an export, each source is read
    from the warehouse's labels and must be one it holds (`available_sources`);
    on an outside set, each `labeler:NAME` / `judge:NAME` is run on the given
    steps with `run_config`'s backends and its labels are stored under
    `run_id`. The PRM gets ProcessBench scores at every threshold and, on an
    export with `rerank`, best-of-N accuracy over all warehouse rollouts of the
    evaluated problems. Each source gets ProcessBench scores over the rows it
    labelled, and its coverage; every row's `n` is its metric's denominator.
    Returns the `eval_results` rows written.
    """
    from prm_data.eval_outside import first_errors, is_outside_set, label_outside_set, read_processbench_set
    from prm_data.warehouse import shard_name

    outside = is_outside_set(dataset)
    if outside:
        from prm_data.config import RunConfig

        pb = read_processbench_set(dataset, split)
        rows = [{"rollout_id": r.rollout_id, "problem_id": r.problem_id, "problem": r.problem,
                 "steps": list(r.steps), "label": r.label} for r in pb]
        rerank = False  # an outside set has no sampled candidates per problem in the warehouse
    else:
        if sources:
            check_sources(warehouse, sources)
        rows = processbench_rows(dataset, split)
    labels = [r["label"] for r in rows]
    base = {"dataset": str(dataset), "split": split}
    results: list[dict] = []
    if checkpoint is not None:
        from prm_data.train.model import PRMScorer

        scorer = PRMScorer.from_checkpoint(checkpoint)
        step_scores = scorer.score([(r["problem"], r["steps"]) for r in rows], batch_size)
        for t in thresholds:
            score = processbench_from_scores(step_scores, labels, t)
            results += result_rows(run_id, str(checkpoint), "processbench", processbench_metrics(score),
                                   processbench_denominators(score), t,
                                   {**base, "n_erroneous": score.n_erroneous, "n_correct": score.n_correct})
        if rerank:
            candidates = best_of_n_candidates(warehouse, sorted({r["problem_id"] for r in rows}))
            cand_scores = scorer.score([(c["question"], c["steps"]) for c in candidates], batch_size)
            bon = best_of_n(candidates, {c["rollout_id"]: s for c, s in zip(candidates, cand_scores)})
            n_problems = len({c["problem_id"] for c in candidates})
            details = {**base, "candidates": len(candidates)}
            results += result_rows(run_id, str(checkpoint), "best_of_n",
                                   {k: v for k, v in bon.items() if k.startswith("accuracy@")}, n_problems,
                                   details=details)
            results += result_rows(run_id, "baseline", "best_of_n",
                                   {k: v for k, v in bon.items() if not k.startswith("accuracy@")}, n_problems,
                                   details=details)
    if outside and sources:
        by_source, stored = label_outside_set(warehouse, pb, sources, run_config or RunConfig(), run_id, str(dataset))
        predictions = {s: first_errors(by_source[s]) for s in sources}
        rows = [{**row, "rollout_id": r.rollout_id} for row, r in zip(rows, stored)]
    for source in sources:
        if outside:
            predicted = predictions[source]
            covered = [r for r in rows if r["rollout_id"] in predicted]
            score = processbench_f1([predicted[r["rollout_id"]] for r in covered], [r["label"] for r in covered])
            covered_n = len(covered)
        else:
            score, covered_n = source_processbench(warehouse, source, rows)
        metrics = {**processbench_metrics(score), "coverage": covered_n / len(rows) if rows else None}
        results += result_rows(run_id, source, "processbench", metrics,
                               {**processbench_denominators(score), "coverage": len(rows)}, details={
                                   **base, "n_erroneous": score.n_erroneous, "n_correct": score.n_correct})
    if not results:
        raise ValueError("nothing to evaluate: give a checkpoint and/or sources")
    shard = shard_name("eval", checkpoint, *sources, *thresholds, split, dataset)
    write_eval_results(warehouse, run_id, results, shard)
    if plot_path is not None:
        from prm_data.eval_plot import plot_eval

        plot_eval(results, plot_path)
    return results
