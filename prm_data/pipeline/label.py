"""Stages: probe the judges, expand the prefix trees (tree labelers), label steps (the others).

Which labeler runs where, and with which models, comes from its registry
entry (prm_data/labelers/registry.py): a labeler that needs `tree` runs in the
shard's `expand_trees` task, sharing one prefix tree per sampler (the
completer's, or the prover's when it is another model); every other labeler
runs in its own `label` task per shard. Each labeler writes its side tables
and then its `step_labels` shard `<labeler>-<shard>`, last, as the marker that
it finished. A labeler redone after a crash re-asks the same requests (served
by the request cache) and re-inserts the same completion ids, which the tree
counts once, so nothing is paid or counted twice.
"""

from __future__ import annotations

from prm_data.labelers.judge_probes import check_judges
from prm_data.labelers.protocol import LabelerInputs, LabelerOutput
from prm_data.labelers.registry import PANEL, spec
from prm_data.pipeline.context import StageScope
from prm_data.pipeline.inputs import rollout_steps, shard_problems
from prm_data.records import labels_table
from prm_data.trees.prefix_tree import PrefixTree
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse


def _load_tree(wh: Warehouse, problem_ids: list[str], model: str) -> PrefixTree:
    rows = [r for r in wh.read_keyed("tree_nodes", None, "problem_id", problem_ids).to_pylist()  # only the
            if r["completer_model"] in (model, None)]  # shards, of any run, that hold these problems
    return PrefixTree.from_rows(rows, model=model) if rows else PrefixTree(model)


def _write_output(scope: StageScope, name: str, shard: str, output: LabelerOutput) -> str | None:
    wh, run_id, marker = scope.warehouse, scope.run_id, f"{name}-{shard}"
    for table, rows in output.tables.items():
        if rows:
            wh.write_shard(table, rows, run_id=run_id, shard=marker)
    scope.flush()
    if not output.labels:
        return None
    return str(wh.write_shard("step_labels", labels_table(output.labels, run_id), run_id=run_id, shard=marker))


def _sampler_role(scope: StageScope, name: str) -> str:
    """The client role a tree labeler samples from: the prover shares the completer when it is the same model."""
    role = spec(name).sampler
    return "completer" if role == "prover" and scope.ctx.same_backend("prover", "completer") else role


def expand_trees_shard(scope: StageScope, shard: str, labeling, skip_uniform: bool) -> list[str]:
    """Run the shard's tree labelers, in configured order, one shared tree per sampler model."""
    names = labeling.tree_labelers()
    wh, run_id = scope.warehouse, scope.run_id
    done = {n: wh.existing_shard("step_labels", run_id, f"{n}-{shard}") for n in names}
    todo = [n for n in names if done[n] is None]
    paths = [done[n] for n in names if done[n] is not None]
    if not todo:
        return paths
    problems = shard_problems(wh, run_id, shard)
    rollouts = rollout_steps(wh, run_id, shard, skip_uniform, problems)
    if not rollouts:
        return paths
    problem_ids = sorted({r.problem_id for r in rollouts})
    samplers: dict[str, Completer] = {}
    for name in todo:
        role = _sampler_role(scope, name)
        if role not in samplers:
            client = scope.client(role)
            samplers[role] = Completer(client, _load_tree(wh, problem_ids, client.model), labeling.completer,
                                       run_id, scope.failures, scope.ctx.verifiers)
        sampler = samplers[role]
        output = spec(name).run(LabelerInputs(run_id, rollouts, problems, scope.failures, sampler=sampler),
                                labeling.config_of(name))
        if sampler.completion_rows:
            wh.write_shard("completions", sampler.completion_rows, run_id=run_id, shard=f"{name}-{shard}")
            sampler.completion_rows = []
        wh.write_shard("tree_nodes", sampler.tree.to_rows(run_id, problem_ids), run_id=run_id,
                       shard=f"{role}-{shard}")
        if path := _write_output(scope, name, shard, output):
            paths.append(path)
    return paths


def check_judges_stage(scope: StageScope, labeling) -> dict:
    """Run the judge-hacking probes against every judge; a refused judge raises JudgeRejected."""
    if not labeling.check_judges or not labeling.needs("judges"):
        return {}
    try:
        reports = check_judges(dict(scope.judges(labeling.config_of(PANEL)).clients), labeling.judge_probes)
    finally:
        scope.flush()  # a refused judge's failed requests are kept as failure rows too
    return {name: {"samples": r.samples, "accept_share": r.accept_share, "abstain_share": r.abstain_share}
            for name, r in reports.items()}


def label_shard(scope: StageScope, shard: str, labeler: str, labeling, skip_uniform: bool) -> str | None:
    """Run one labeler that expands no tree (tool_verify, judge_vote, rubric, ...) on a shard."""
    wh, run_id = scope.warehouse, scope.run_id
    entry = spec(labeler)
    if "tree" in entry.needs:
        raise ValueError(f"{labeler} expands prefix trees: it runs in expand_trees, not label")
    if done := wh.existing_shard("step_labels", run_id, f"{labeler}-{shard}"):
        return done
    problems = shard_problems(wh, run_id, shard)
    rollouts = rollout_steps(wh, run_id, shard, skip_uniform, problems)
    if not rollouts:
        return None
    sampler = None
    if entry.sampler is not None:  # a labeler that samples continuations without keeping a tree
        client = scope.client(entry.sampler)
        sampler = Completer(client, PrefixTree(client.model), labeling.completer, run_id, scope.failures,
                            scope.ctx.verifiers)
    judges = scope.judges(labeling.config_of(PANEL)) if "judges" in entry.needs else None
    output = entry.run(LabelerInputs(run_id, rollouts, problems, scope.failures, sampler=sampler, judges=judges),
                       labeling.config_of(labeler))
    if sampler is not None and sampler.completion_rows:
        output.tables.setdefault("completions", []).extend(sampler.completion_rows)
    return _write_output(scope, labeler, shard, output)

