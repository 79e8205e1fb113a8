"""Ground-truth step labels for the synthetic policy: a labeled warehouse in seconds.

The synthetic policy (`prm_data/llm/sim.py`) knows the true first error of
every solution it writes. This module samples rollouts of bank problems with it
(`prm_data.rollouts.generate_rollouts`), builds their prefix trees
(`prm_data.trees.prefix_tree`, each rollout counted as a Monte Carlo sample
from the root, as Math-Shepherd counts completions) and writes `final_labels`
under the policy `oracle`: a step is good iff it comes before the true first
error; its soft value is the Monte Carlo value of its tree node.

It is a stand-in for the labelers where the truth is what is being tested:
export, PRM training and evaluation tests, demos and `deploy/gpu_check.sh`.
The policy name `oracle` keeps these rows apart from real labels.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.rollouts import RolloutConfig, generate_rollouts
from prm_data.sources.bank import generate_bank
from prm_data.stepwise_rows import write_final_labels
from prm_data.trees.prefix_tree import PrefixTree
from prm_data.warehouse import Warehouse

ORACLE_POLICY = "oracle"


class SimLabelsConfig(BaseModel):
    """How much synthetic labeled data to make."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    problems: int = Field(64, ge=1, description="Bank problems to solve.")
    rollouts_per_problem: int = Field(8, ge=1, description="Sampled solutions per problem (Math-Shepherd N).")
    difficulty: tuple[int, int] = Field((2, 5), description="Inclusive range of operations per problem.")
    error_rate: float = Field(0.2, ge=0.0, le=1.0, description="Per-step error probability of the sim policy.")
    seed: int = Field(0, description="Seed of the bank and of the sampled rollouts.")


def write_sim_labels(warehouse: Warehouse, run_id: str, config: SimLabelsConfig | None = None) -> dict[str, int]:
    """Write problems, rollouts, steps, completions, tree_nodes and oracle final_labels; returns row counts."""
    config = config or SimLabelsConfig()
    problems = [p.to_row(run_id) for p in generate_bank(config.problems, config.seed, config.difficulty)]
    client = LLMClient(SimBackend(model="sim-policy", error_rate=config.error_rate))
    batch = generate_rollouts(problems, client, RolloutConfig(n=config.rollouts_per_problem, seed=config.seed),
                              run_id)
    tree = PrefixTree(model=client.model)
    labels = []
    for r in batch.for_labeling():
        nodes = tree.insert_path(r.problem_id, r.steps, 0, r.is_correct, r.rollout_id, model=client.model)
        if r.true_first_error is None:
            raise ValueError(f"rollout {r.rollout_id} has no true first error: oracle labels need the sim policy")
        first_error = r.true_first_error
        for i in range(len(r.steps)):
            labels.append({
                "run_id": run_id, "problem_id": r.problem_id, "rollout_id": r.rollout_id, "step_index": i,
                "policy": ORACLE_POLICY, "label": first_error == -1 or i < first_error,
                "value": None, "sources": ["true_first_error"], "kept": True, "drop_reason": None,
                "_node": nodes[i + 1].node_id if len(nodes) > i + 1 else None,
            })
    for row in labels:  # values once every rollout is counted
        node = tree.nodes.get(row.pop("_node"))
        row["value"] = node.mc_value if node is not None else None
    warehouse.write_shard("problems", problems, run_id=run_id, shard="sim-problems")
    batch.write(warehouse, shard="sim-rollouts")
    warehouse.write_shard("tree_nodes", tree.to_rows(run_id), run_id=run_id, shard="sim-tree")
    write_final_labels(warehouse, labels, run_id, "sim-oracle")
    return {"problems": len(problems), "rollouts": len(batch.rollouts), "steps": len(batch.steps),
            "tree_nodes": len(tree), "final_labels": len(labels), "failures": len(batch.failures)}
