"""Shared-prefix sibling sampling with fork-relative advantages (SLATE, PORTool).

- SLATE (Samarinas et al., "Truncated Step-Level Sampling with Process Rewards
  for Retrieval-Augmented Reasoning", arXiv 2602.23440): sample k continuations
  that share a prefix and differ from the next step on, so the variation of the
  outcome is owed to that one decision point (lower-variance step advantages).
- PORTool (Wu et al., "PORTool: Tool-Use LLM Training with Rewarded Tree",
  arXiv 2510.26020): rollouts sharing prefixes form a tree; a step shared by
  several trajectories gets one reward, the steps under one fork get different
  rewards, and a step's fork-relative advantage is its reward minus the mean
  reward of the steps under the same fork.

Here a fork is a step prefix of a rollout (the empty prefix included). From
each distinct fork, completions are sampled until the fork counts `k + 1` (k
alternatives next to the rollout's own step; completions the tree already holds
count, so at the root the rollouts themselves are the siblings). Each
completion's first step is a sibling; identical steps share one tree node and so
one value. A sibling whose node holds fewer than `min_samples_per_sibling`
completions gets more from its own prefix, so its value is not a single
outcome. Sampling the whole continuation at once gives the next step and its
completion in one call, with the same distribution as sampling the step, then
completing it.

Per rollout step: value = V(step) - mean over the fork's siblings of V, where
V(node) = the node's Monte Carlo success rate; hard_label = some completion
through the step reached the gold answer (PORTool's correctness signal);
confidence = Wilson confidence of V(step). `step_preference_pairs` turns the
forks of a tree into (prefix, chosen step, rejected step) pairs for the exporter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from prm_data.records import StepLabels, wilson_confidence
from prm_data.rollouts import RolloutSteps
from prm_data.trees.prefix_tree import PrefixTree, TreeNode
from prm_data.trees.sampling import Ask, Completer, Estimate, ask_for, drive, labeler_version, mc_estimate

NAME = "sibling"
CODE_VERSION = "v1"
EVIDENCE = {"node_id": pa.string(), "fork_node_id": pa.string(), "step_value": pa.float64(),
            "step_samples": pa.int64(), "sibling_mean": pa.float64(), "siblings": pa.int64(),
            "fork_samples": pa.int64(), "completer_model": pa.string(), "verifier": pa.string()}


class SiblingConfig(BaseModel):
    """Shared-prefix sibling sampling settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(4, ge=1, description="Alternative next steps per fork (besides the rollout's own).")
    min_samples_per_sibling: int = Field(
        2, ge=1, description="Completions a sibling node must hold for its value; more are drawn if fewer.")


def label_sibling(rollouts: Sequence[RolloutSteps], completer: Completer,
                  cfg: SiblingConfig = SiblingConfig()) -> StepLabels:
    """Label every rollout step with its fork-relative advantage."""
    tree = completer.tree
    completer.add_rollouts(rollouts)
    forks: dict[str, tuple[str, int]] = {}  # fork node id -> (rollout id, step index) paying for it
    asks: dict[str, Ask] = {}
    for r in rollouts:
        for i, node in enumerate(tree.path(r.problem_id, r.steps)[:-1]):
            if node.node_id not in forks:
                forks[node.node_id] = (r.rollout_id, i)
                asks[node.node_id] = ask_for(r, i, cfg.k + 1)
    order = list(forks)
    cost: dict[str, list[Estimate]] = {fid: [e] for fid, e in zip(order, drive(
        completer, [mc_estimate(completer, asks[f], cfg.k + 1) for f in order], NAME))}
    # siblings with too few completions of their own: complete them from their own prefix
    thin = [(fid, child) for fid in order for child in tree.children(tree.nodes[fid])
            if child.mc_samples < cfg.min_samples_per_sibling]
    extra = drive(completer, [mc_estimate(completer, _ask_at(tree, asks[fid], child, cfg), cfg.min_samples_per_sibling)
                              for fid, child in thin], NAME)
    for (fid, _), est in zip(thin, extra):
        cost[fid].append(est)
    version = labeler_version(CODE_VERSION, cfg)
    labels = StepLabels(NAME, version, EVIDENCE)
    for r in rollouts:
        path = tree.path(r.problem_id, r.steps)
        for i in range(len(r.steps)):
            fork, own = path[i], path[i + 1]
            siblings = [c for c in tree.children(fork) if c.mc_samples > 0]
            if own.mc_samples == 0 or not siblings:
                completer.failures.record(f"label:{NAME}", "the step or its siblings have no completion; "
                                          "the step is left unlabeled", item_id=f"{r.rollout_id}:{i}")
                continue
            mean = sum(c.mc_value for c in siblings) / len(siblings)
            paid = cost[fork.node_id] if forks[fork.node_id] == (r.rollout_id, i) else []
            labels.add(
                problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i, value=own.mc_value - mean, hard_label=tree.reaches_gold(own),
                confidence=wilson_confidence(own.mc_successes, own.mc_samples),
                prompt_tokens=sum(e.prompt_tokens for e in paid),
                completion_tokens=sum(e.completion_tokens for e in paid),
                calls=sum(e.calls for e in paid),
                evidence={"node_id": own.node_id, "fork_node_id": fork.node_id, "step_value": own.mc_value,
                          "step_samples": own.mc_samples, "sibling_mean": mean,
                          "siblings": len(siblings), "fork_samples": fork.mc_samples,
                          "completer_model": completer.model,
                          "verifier": completer.verifier_tag(ask_for(r, i, 1))})
    return labels


def _ask_at(tree: PrefixTree, fork_ask: Ask, child: TreeNode, cfg: SiblingConfig) -> Ask:
    prefix = tuple(tree.prefix_steps(child))
    return Ask(fork_ask.problem_id, fork_ask.question, fork_ask.answer, prefix, cfg.min_samples_per_sibling,
               fork_ask.spec)


def step_preference_pairs(tree: PrefixTree, min_margin: float = 0.5, min_samples: int = 2,
                          problem_ids: Iterable[str] | None = None) -> list[dict]:
    """(prefix, chosen step, rejected step) pairs from the forks of a tree.

    For every node with at least two children holding `min_samples`
    completions each, every pair of children whose values differ by at least
    `min_margin` gives one pair, the higher-valued step chosen. Rows carry the
    prefix steps, both steps, their values and sample counts and node ids.
    """
    wanted = set(problem_ids) if problem_ids is not None else None
    pairs = []
    for fork in sorted(tree.nodes.values(), key=lambda n: (n.problem_id, n.depth, n.node_id)):
        if wanted is not None and fork.problem_id not in wanted:
            continue
        kids = sorted((c for c in tree.children(fork) if c.mc_samples >= min_samples),
                      key=lambda c: (-c.mc_value, c.node_id))
        if len(kids) < 2:
            continue
        prefix = tree.prefix_steps(fork)
        for a, b in combinations(kids, 2):
            margin = a.mc_value - b.mc_value
            if margin < min_margin:
                continue
            pairs.append({"problem_id": fork.problem_id, "prefix_node_id": fork.node_id, "prefix": prefix,
                          "chosen": a.step_text, "rejected": b.step_text,
                          "chosen_value": a.mc_value, "rejected_value": b.mc_value, "margin": margin,
                          "chosen_samples": a.mc_samples, "rejected_samples": b.mc_samples,
                          "chosen_node_id": a.node_id, "rejected_node_id": b.node_id})
    return pairs
