"""Stages: expand the prefix trees (Monte Carlo labelers) and label steps (tools, judges, rubrics).

Each labeler writes its `step_labels` shard `<labeler>-<shard>` last, as the
marker that it finished; the completions and tree snapshot it produced are
written just before. A labeler redone after a crash re-asks the same requests
(served by the request cache) and re-inserts the same completion ids, which
the tree counts once, so nothing is paid or counted twice.
"""

from __future__ import annotations

from prm_data.config import RunConfig
from prm_data.labelers.judge_probes import check_judges
from prm_data.labelers.judge_vote import judge_solutions
from prm_data.labelers.registry import LABELERS
from prm_data.labelers.rubric import (RubricProblem, generate_contrastive_rubrics, generate_rubrics,
                                      label_with_rubrics)
from prm_data.labelers.tool_verify import label_tool_verify
from prm_data.pipeline.context import StageContext
from prm_data.pipeline.inputs import rollout_steps, shard_problems, solutions
from prm_data.trees.prefix_tree import PrefixTree
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse

TREE_LABELERS = ("mc_value", "omega_prm", "sibling")


def _load_tree(wh: Warehouse, problem_ids: list[str], model: str) -> PrefixTree:
    rows = [r for r in wh.read_keyed("tree_nodes", None, "problem_id", problem_ids).to_pylist()  # only the
            if r["completer_model"] in (model, None)]  # shards, of any run, that hold these problems
    return PrefixTree.from_rows(rows, model=model) if rows else PrefixTree(model)


def _run_tree_labelers(ctx: StageContext, shard: str, names: list[str], client, tree_shard: str,
                       rollouts) -> list[str]:
    wh, run_id, cfg = ctx.warehouse, ctx.run_id, ctx.config
    done = {n: wh.existing_shard("step_labels", run_id, f"{n}-{shard}") for n in names}
    todo = [n for n in names if done[n] is None]
    paths = [done[n] for n in names if done[n] is not None]
    if not todo:
        return paths
    problem_ids = sorted({r.problem_id for r in rollouts})
    completer = Completer(client, _load_tree(wh, problem_ids, client.model), cfg.labeling.completer,
                          run_id, ctx.failures)
    for name in todo:
        labeler = LABELERS[name]
        labels = labeler.function(rollouts, completer, getattr(cfg.labeling, name))
        if completer.completion_rows:
            wh.write_shard("completions", completer.completion_rows, run_id=run_id, shard=f"{name}-{shard}")
            completer.completion_rows = []
        wh.write_shard("tree_nodes", completer.tree.to_rows(run_id, problem_ids), run_id=run_id,
                       shard=tree_shard)
        ctx.flush(f"{name}-{shard}")
        if labels:
            paths.append(str(wh.write_shard("step_labels", [l.to_row(run_id) for l in labels],
                                            run_id=run_id, shard=f"{name}-{shard}")))
    return paths


def expand_trees_shard(config: RunConfig, run_id: str, shard: str) -> list[str]:
    """Run the Monte Carlo labelers of the config (one shared tree per completer model)."""
    names = config.labeling.tree_labelers()
    if not names:
        return []
    ctx = StageContext(config, run_id)
    rollouts = rollout_steps(ctx.warehouse, run_id, shard, config.rollouts.skip_uniform)
    if not rollouts:
        return []
    tree_names = [n for n in names if n in TREE_LABELERS]
    paths = _run_tree_labelers(ctx, shard, tree_names, ctx.completer(), f"completer-{shard}", rollouts)
    if "progress" in names:
        same = config.prover_backend == config.completer_backend
        client = ctx.completer() if same else ctx.prover()
        tree_shard = f"completer-{shard}" if same else f"prover-{shard}"
        paths += _run_tree_labelers(ctx, shard, ["progress"], client, tree_shard, rollouts)
    return paths


def check_judges_stage(config: RunConfig, run_id: str) -> dict:
    """Run the judge-hacking probes against every judge; a refused judge raises JudgeRejected."""
    if not config.labeling.check_judges or not ({"judge_vote", "rubric"} & set(config.labeling.labelers)):
        return {}
    ctx = StageContext(config, run_id)
    try:
        reports = check_judges(ctx.judges(), config.labeling.judge_probes)
    finally:
        ctx.flush("judge-probes")  # a refused judge's failed requests are kept as failure rows too
    return {name: {"samples": r.samples, "accept_share": r.accept_share, "abstain_share": r.abstain_share}
            for name, r in reports.items()}


def label_shard(config: RunConfig, run_id: str, shard: str, labeler: str) -> str | None:
    """Run one model-free or judge labeler (tool_verify, judge_vote, rubric) on a shard."""
    ctx = StageContext(config, run_id)
    wh = ctx.warehouse
    marker = f"{labeler}-{shard}"
    if done := wh.existing_shard("step_labels", run_id, marker):
        return done
    sols = solutions(wh, run_id, shard, config.rollouts.skip_uniform)
    if not sols:
        return None
    lab = config.labeling
    if labeler == "tool_verify":
        labels = label_tool_verify(sols, lab.tool_verify, ctx.failures)
    elif labeler == "judge_vote":
        result = judge_solutions(sols, ctx.judges(), lab.judge_vote, run_id, failures=ctx.failures)
        if result.judgments:
            wh.write_shard("judgments", result.judgments, run_id=run_id, shard=marker)
        labels = result.labels
    elif labeler == "rubric":
        writer = next(iter(ctx.judges().values()))
        problems = [RubricProblem(p["problem_id"], p["question"], str(p["answer"]),
                                  p.get("reference_solution") or "")
                    for p in shard_problems(wh, run_id, shard)]
        rubrics = generate_rubrics(problems, writer, lab.rubric, ctx.failures)
        rubrics += generate_contrastive_rubrics(sols, writer, lab.rubric, ctx.failures)
        if rubrics:
            wh.write_shard("rubrics", [r.to_row(run_id) for r in rubrics], run_id=run_id, shard=shard)
        result = label_with_rubrics(sols, rubrics, ctx.judges(), lab.judge_vote, run_id, ctx.failures)
        if result.judgments:
            wh.write_shard("judgments", result.judgments, run_id=run_id, shard=marker)
        labels = result.labels
    else:
        raise ValueError(f"label_shard runs tool_verify, judge_vote or rubric, not {labeler!r}")
    ctx.flush(marker)
    if not labels:
        return None
    return str(wh.write_shard("step_labels", [l.to_row(run_id) for l in labels], run_id=run_id, shard=marker))
