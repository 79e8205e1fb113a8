"""The shared-prefix tree: shared nodes, which nodes count a completion, storage, resuming."""

from __future__ import annotations

from mc_helpers import ScriptedBackend, rollout, steps_of

from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.llm.client import LLMClient
from prm_data.trees.prefix_tree import PrefixTree, node_id_for, prefix_node_ids
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse


def test_identical_normalized_prefixes_share_one_node():
    tree = PrefixTree("m")
    a = ["Step 1: Mia has 3 apples, so 3 + 2 = 5.", "Step 2: then 5 * 2 = 10.", "Step 3: 10 - 1 = 9."]
    b = ["step 1:  Mia has 3 apples,  so 3+2=5", "Step 2: then 5 * 2 = 10.", "Step 3: 10 - 4 = 6."]
    pa, pb = tree.path("p1", a), tree.path("p1", b)
    assert [n.node_id for n in pa[:3]] == [n.node_id for n in pb[:3]]
    assert pa[3].node_id != pb[3].node_id
    assert len(tree) == 1 + 2 + 2  # root, two shared steps, two different last steps
    assert len(pa[2].children) == 2
    assert [n.node_id for n in pa[1:]] == prefix_node_ids("p1", a)
    assert pa[0].node_id == node_id_for("p1", [])
    assert tree.path("p2", a)[1].node_id != pa[1].node_id  # same steps, other problem: other node


def test_a_completion_counts_at_its_start_node_and_below_only():
    tree = PrefixTree("m")
    steps = steps_of(4)
    counted = tree.insert_path("p", steps, start_depth=2, correct=True, completion_id="c1", model="m")
    path = tree.path("p", steps)
    assert [n.depth for n in counted] == [2, 3, 4]
    assert [n.mc_samples for n in path] == [0, 0, 1, 1, 1]
    assert [n.mc_successes for n in path] == [0, 0, 1, 1, 1]
    assert path[3].completion_ids == ["c1"]
    assert tree.insert_path("p", steps, 2, True, "c1", "m") == []  # counted once only
    tree.insert_path("p", steps[:3], 0, False, "c2", "m")
    assert [(n.mc_successes, n.mc_samples) for n in path] == [(0, 1), (0, 1), (1, 2), (1, 2), (1, 1)]
    assert path[2].mc_value == 0.5


def test_paths_of_another_model_are_inserted_as_structure_only():
    tree = PrefixTree("completer")
    steps = steps_of(3)
    assert tree.insert_path("p", steps, 0, True, "r1", model="other-policy") == []
    assert len(tree) == 4
    assert all(n.mc_samples == 0 for n in tree.nodes.values())


def test_reaches_gold_sees_successes_that_started_deeper():
    tree = PrefixTree("m")
    steps = steps_of(3)
    tree.insert_path("p", steps, 2, True, "c1", "m")
    path = tree.path("p", steps)
    assert path[1].mc_samples == 0 and tree.reaches_gold(path[1])
    tree.insert_path("p", steps_of(2, tag="x"), 1, False, "c2", "m")
    assert not tree.reaches_gold(tree.path("p", steps_of(2, tag="x"))[1])


def test_tree_round_trips_through_the_warehouse(tmp_path):
    tree = PrefixTree("m")
    tree.insert_path("p", steps_of(3), 0, True, "r1", "m")
    tree.insert_path("p", steps_of(3)[:1] + ["Step 2: another way, 1 + 5 = 6."], 1, False, "c1", "m")
    tree.insert_path("q", steps_of(2), 0, False, "r2", "m")
    tree.node_at("p", steps_of(1)).visits = 3
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("tree_nodes", tree.to_rows("run1"), run_id="run1", shard="tree")
    loaded = PrefixTree.from_rows(wh.rows("SELECT * FROM tree_nodes"))
    assert loaded.model == "m"
    assert set(loaded.nodes) == set(tree.nodes)
    for nid, node in tree.nodes.items():
        other = loaded.nodes[nid]
        assert (other.parent_id, other.depth, other.visits, other.mc_successes, other.mc_samples,
                other.completion_ids, other.children) == (node.parent_id, node.depth, node.visits,
                                                          node.mc_successes, node.mc_samples,
                                                          node.completion_ids, node.children)
    assert loaded.insert_path("p", steps_of(3), 0, True, "r1", "m") == []  # still knows r1


def test_from_rows_keeps_the_fullest_snapshot_and_rejects_mixed_models():
    small, big = PrefixTree("m"), PrefixTree("m")
    small.insert_path("p", steps_of(1), 0, True, "a", "m")
    for cid in "abc":
        big.insert_path("p", steps_of(1), 0, cid != "c", cid, "m")
    rows = small.to_rows("run1") + big.to_rows("run2")
    loaded = PrefixTree.from_rows(rows)
    assert loaded.node_at("p", steps_of(1)).mc_samples == 3
    other = PrefixTree("n")
    other.insert_path("p", steps_of(1), 0, True, "z", "n")
    mixed = rows + other.to_rows("run3")
    try:
        PrefixTree.from_rows(mixed)
    except ValueError as exc:
        assert "several completer models" in str(exc)
    else:
        raise AssertionError("rows of two completer models were merged into one tree")
    assert PrefixTree.from_rows(mixed, model="n").node_at("p", steps_of(1)).mc_samples == 1


def test_a_reloaded_tree_continues_where_it_stopped(tmp_path):
    backend = ScriptedBackend(lambda prefix, drawn: drawn % 3 == 0)
    r = rollout("r1", steps_of(3), is_correct=False, policy_model="someone-else")
    first = Completer(LLMClient(backend), run_id="run1")
    label_mc_value([r], first, MCValueConfig(k=4))
    assert [backend.drawn_from(r.steps[:i + 1]) for i in range(3)] == [4, 4, 4]
    keys_before = set(backend.keys)
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("tree_nodes", first.tree.to_rows("run1"), run_id="run1", shard="tree")

    resumed = Completer(LLMClient(backend), PrefixTree.from_rows(wh.rows("SELECT * FROM tree_nodes")),
                        run_id="run2")
    labels = label_mc_value([r], resumed, MCValueConfig(k=8))
    assert [backend.drawn_from(r.steps[:i + 1]) for i in range(3)] == [8, 8, 8]  # 4 more each, not 8
    assert not keys_before & set(backend.keys[len(keys_before):])  # no sample drawn twice
    assert [l.evidence["mc_samples"] for l in labels] == [8, 8, 8]
    assert [l.evidence["reused_samples"] for l in labels] == [4, 4, 4]
    assert [l.calls for l in labels] == [4, 4, 4]
    # drawn % 3 == 0 for draws 0..7 -> successes at draws 0, 3, 6
    assert [l.value for l in labels] == [3 / 8] * 3

    again = Completer(LLMClient(backend), resumed.tree, run_id="run3")
    label_mc_value([r], again, MCValueConfig(k=8))
    assert again.client.stats.total.calls == 0  # the tree already holds every sample asked for


def _omega_labels(max_in_flight: int, latency_s: float = 0.0):
    from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm
    from prm_data.labelers.sim_truth import sim_rollouts
    from prm_data.llm.sim import SimBackend
    from prm_data.trees.sampling import CompleterConfig

    rollouts = [r.as_rollout_steps() for r in sim_rollouts(12, per_problem=4, error_rate=0.3, seed=5)]
    client = LLMClient(SimBackend(latency_s=latency_s), concurrency=16)
    completer = Completer(client, cfg=CompleterConfig(max_in_flight=max_in_flight))
    labels = label_omega_prm(rollouts, completer, OmegaPRMConfig(k=4, continue_search=False, early_stop=True))
    return [(l.rollout_id, l.step_index, l.hard_label, l.value, l.completion_tokens) for l in labels], completer


def test_pipelined_binary_searches_give_the_same_labels_and_tree_as_searches_in_rounds():
    in_rounds, a = _omega_labels(max_in_flight=0)
    pipelined, b = _omega_labels(max_in_flight=8, latency_s=0.002)
    assert pipelined == in_rounds and any(hard is False for _, _, hard, _, _ in in_rounds)
    assert a.tree.to_rows("r") == b.tree.to_rows("r")
