"""A shared-prefix tree (trie over solution steps) holding Monte Carlo statistics.

Every solution of a problem is a path from the problem's root (the empty
prefix) through one node per step. Steps are compared in normalized form
(`prm_data.steps.normalize_step`), so identical step prefixes of different
rollouts share one node, and `node_id` is a hash of (problem_id, normalized
prefix): the same prefix gets the same id in every run.

Per node the tree keeps the statistics that Math-Shepherd (arXiv 2312.08935)
and OmegaPRM (arXiv 2406.06592) estimate from completions:

- `mc_samples` / `mc_successes`: completions counted at this node and how many
  of them reached the gold answer (MC(node) = successes / samples);
- `mc_score`: the sum of those completions' soft scores (the verifier's score in
  [0, 1]: for code the share of unit tests passed; for math, equal to the successes);
- `completion_ids`: exactly the completions counted (so the two agree);
- `visits`: how many sampling requests were made from this prefix. It is the
  OmegaPRM visit count N(s), and it also picks the seed of the next request
  (`prm_data.trees.sampling`), so a reloaded tree never draws again a sample it
  already holds.

Which nodes count a completion: a completion that continued from node X is an
unbiased sample of "what the completer does from X", and its tail after any
deeper node Y on its path is an unbiased sample from Y as well (sampling is
autoregressive). So X and every node below X on its path get one sample; the
ancestors of X do not (their continuation was forced through X). A rollout
sampled from the question is a completion from the root.

A tree belongs to one completer model: mixing samples of two policies would
make MC meaningless, so paths from another model are inserted as structure only
(no samples). The tree is stored in the `tree_nodes` table (`to_rows`) and
reloaded with `from_rows` to resume or extend a run with more budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prm_data.steps import normalize_step, stored_step


def node_id_for(problem_id: str, normalized_prefix: Sequence[str]) -> str:
    """The id of the node for `problem_id` whose prefix is these normalized steps."""
    blob = problem_id + "\x1e" + "\x1f".join(normalized_prefix)
    return "n-" + hashlib.sha256(blob.encode()).hexdigest()[:24]


def prefix_node_ids(problem_id: str, steps: Sequence[str]) -> list[str]:
    """Node ids of the prefixes ending with each step (index i: steps[: i + 1])."""
    norm = [normalize_step(s) for s in steps]
    return [node_id_for(problem_id, norm[: i + 1]) for i in range(len(norm))]


@dataclass
class TreeNode:
    node_id: str
    problem_id: str
    parent_id: str | None
    depth: int  # number of steps in the prefix
    step_text: str | None  # the step from the parent to this node (first spelling seen)
    visits: int = 0
    mc_successes: int = 0
    mc_samples: int = 0
    mc_score: float = 0.0  # sum of the counted completions' soft scores
    completion_ids: list[str] = field(default_factory=list)
    children: dict[str, str] = field(default_factory=dict)  # normalized step -> child node id
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def mc_value(self) -> float | None:
        """Fraction of counted completions that reached the gold answer; None without samples."""
        return self.mc_successes / self.mc_samples if self.mc_samples else None

    @property
    def mc_soft_value(self) -> float | None:
        """Mean soft score of the counted completions; None without samples."""
        return self.mc_score / self.mc_samples if self.mc_samples else None

    def count(self, completion_id: str, correct: bool, score: float | None = None) -> bool:
        """Count one completion here (its soft score defaults to its correctness); False if counted before."""
        if completion_id in self._seen:
            return False
        self._seen.add(completion_id)
        self.completion_ids.append(completion_id)
        self.mc_samples += 1
        self.mc_successes += int(bool(correct))
        self.mc_score += float(bool(correct)) if score is None else float(score)
        return True


class PrefixTree:
    """The prefix trees of any number of problems, for one completer model."""

    def __init__(self, model: str | None = None):
        self.model = model  # None until the first counted path names it
        self.nodes: dict[str, TreeNode] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    # ------------------------------------------------------------ structure
    def root(self, problem_id: str) -> TreeNode:
        nid = node_id_for(problem_id, [])
        node = self.nodes.get(nid)
        if node is None:
            node = self.nodes[nid] = TreeNode(nid, problem_id, None, 0, None)
        return node

    def path(self, problem_id: str, steps: Sequence[str]) -> list[TreeNode]:
        """[root, node after step 0, ..., node after the last step], created as needed."""
        node = self.root(problem_id)
        out = [node]
        norm: list[str] = []
        for step in steps:
            key = normalize_step(step)
            norm.append(key)
            child_id = node.children.get(key)
            if child_id is None:
                child_id = node_id_for(problem_id, norm)
                if child_id not in self.nodes:
                    self.nodes[child_id] = TreeNode(child_id, problem_id, node.node_id,
                                                    node.depth + 1, stored_step(step))
                node.children[key] = child_id
            node = self.nodes[child_id]
            out.append(node)
        return out

    def node_at(self, problem_id: str, steps: Sequence[str]) -> TreeNode:
        """The node whose prefix is `steps` (created if new)."""
        return self.path(problem_id, steps)[-1]

    def find(self, problem_id: str, steps: Sequence[str]) -> TreeNode | None:
        """The node whose prefix is `steps`, or None if the tree has never seen it."""
        nid = node_id_for(problem_id, [normalize_step(s) for s in steps])
        return self.nodes.get(nid)

    def children(self, node: TreeNode) -> list[TreeNode]:
        return [self.nodes[c] for c in node.children.values()]

    def prefix_steps(self, node: TreeNode) -> list[str]:
        """The step texts from the root to `node`."""
        out: list[str] = []
        while node.parent_id is not None:
            out.append(node.step_text or "")
            node = self.nodes[node.parent_id]
        return out[::-1]

    def reaches_gold(self, node: TreeNode) -> bool:
        """True if some counted completion at or below `node` reached the gold answer.

        Such a completion is a correct full solution through this prefix, which
        settles Math-Shepherd's hard estimate for it even when the completion
        started deeper (and so is not counted in this node's own MC samples).
        """
        stack = [node]
        while stack:
            n = stack.pop()
            if n.mc_successes > 0:
                return True
            stack.extend(self.nodes[c] for c in n.children.values())
        return False

    def problem_nodes(self, problem_id: str) -> list[TreeNode]:
        return [n for n in self.nodes.values() if n.problem_id == problem_id]

    # ------------------------------------------------------------ statistics
    def insert_path(self, problem_id: str, steps: Sequence[str], start_depth: int,
                    correct: bool | None, completion_id: str, model: str | None = None,
                    score: float | None = None) -> list[TreeNode]:
        """Insert a full solution that continued from its prefix of `start_depth` steps.

        The nodes from depth `start_depth` to the end each count the completion
        (see the module docstring) when `correct` is known and `model` is this
        tree's model (a tree without a model adopts the first one it counts).
        Returns the nodes that counted it (empty when inserted as structure only,
        or when this completion was counted before). `score` is its soft score (default: its correctness).
        """
        if not 0 <= start_depth <= len(steps):
            raise ValueError(f"start_depth {start_depth} outside 0..{len(steps)}")
        nodes = self.path(problem_id, steps)
        if correct is None:
            return []
        if model is not None:
            if self.model is None:
                self.model = model
            elif model != self.model:
                return []
        return [n for n in nodes[start_depth:] if n.count(completion_id, correct, score)]

    # ------------------------------------------------------------ storage
    def to_rows(self, run_id: str, problem_ids: Iterable[str] | None = None) -> list[dict]:
        """`tree_nodes` rows (a snapshot of every node, parents before children)."""
        wanted = set(problem_ids) if problem_ids is not None else None
        rows = []
        for n in sorted(self.nodes.values(), key=lambda n: (n.problem_id, n.depth, n.node_id)):
            if wanted is not None and n.problem_id not in wanted:
                continue
            rows.append({
                "node_id": n.node_id, "run_id": run_id, "problem_id": n.problem_id,
                "parent_id": n.parent_id, "depth": n.depth, "step_text": n.step_text,
                "visits": n.visits, "mc_successes": n.mc_successes, "mc_samples": n.mc_samples,
                "mc_score": n.mc_score, "completion_ids": list(n.completion_ids), "completer_model": self.model,
            })
        return rows

    @classmethod
    def from_rows(cls, rows: Iterable[dict], model: str | None = None) -> PrefixTree:
        """Rebuild a tree from `tree_nodes` rows (of one or several runs).

        Rows are snapshots: when a node appears more than once (a run resumed
        from an earlier one wrote it again) the fullest snapshot wins (most
        samples, then most visits). With `model`, rows of other completer
        models are ignored; without it, rows must all be of one model.
        """
        best: dict[str, dict] = {}
        models = set()
        for r in rows:
            m = r.get("completer_model")
            if model is not None and m is not None and m != model:
                continue
            if m is not None:
                models.add(m)
            prev = best.get(r["node_id"])
            if prev is None or (r["mc_samples"], r["visits"]) > (prev["mc_samples"], prev["visits"]):
                best[r["node_id"]] = r
        if model is None and len(models) > 1:
            raise ValueError(f"tree_nodes rows of several completer models {sorted(models)}; pass model=")
        tree = cls(model if model is not None else (models.pop() if models else None))
        for r in sorted(best.values(), key=lambda r: r["depth"]):
            ids = list(r.get("completion_ids") or [])
            node = TreeNode(r["node_id"], r["problem_id"], r["parent_id"], int(r["depth"]),
                            r["step_text"], visits=int(r["visits"]),
                            mc_successes=int(r["mc_successes"]), mc_samples=int(r["mc_samples"]),
                            # rows written before soft scores existed: every outcome was 0/1
                            mc_score=float(r["mc_successes"] if r.get("mc_score") is None else r["mc_score"]),
                            completion_ids=ids, _seen=set(ids))
            tree.nodes[node.node_id] = node
        for node in tree.nodes.values():
            if node.parent_id is None:
                continue
            parent = tree.nodes.get(node.parent_id)
            if parent is None:
                raise ValueError(f"tree_nodes row {node.node_id} has no parent row {node.parent_id}")
            parent.children[normalize_step(node.step_text or "")] = node.node_id
        return tree
