"""Monte Carlo labelers pinned on tiny scripted cases with exactly known counts."""

from __future__ import annotations

import math

import pytest
from mc_helpers import ScriptedBackend, rollout, steps_of

from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm, selection_score
from prm_data.labelers.progress import ProgressConfig, label_progress
from prm_data.labelers.registry import LABELERS
from prm_data.labelers.sibling import SiblingConfig, label_sibling, step_preference_pairs
from prm_data.llm.client import LLMClient
from prm_data.records import wilson_confidence
from prm_data.trees.prefix_tree import TreeNode
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse

OUTCOMES = {1: [True, False, False, True, False, False, False, True], 2: [False] * 8, 3: [False] * 8}


def by_depth(prefix, drawn):
    return OUTCOMES[len(prefix)][drawn]


# ---------------------------------------------------------------- mc_value
def test_soft_and_hard_estimates_match_exact_counts(tmp_path):
    backend = ScriptedBackend(by_depth, tokens_per_sample=10)
    r = rollout("r1", steps_of(3), is_correct=False, policy_model="another-policy")
    completer = Completer(LLMClient(backend), run_id="run1")
    labels = label_mc_value([r], completer, MCValueConfig(k=8, reuse_tree=False))
    assert [l.value for l in labels] == [3 / 8, 0.0, 0.0]
    assert [l.hard_label for l in labels] == [True, False, False]
    assert [l.evidence["soft_estimate"] for l in labels] == [3 / 8, 0.0, 0.0]
    assert labels[0].confidence == pytest.approx(wilson_confidence(3, 8))
    assert [(l.calls, l.completion_tokens, l.prompt_tokens) for l in labels] == [(8, 80, 40)] * 3
    wh = Warehouse(tmp_path / "wh")  # the rows fit the schema
    wh.write_shard("step_labels", [l.to_row("run1") for l in labels], run_id="run1", shard="mc")
    wh.write_shard("completions", completer.completion_rows, run_id="run1", shard="mc")
    assert wh.scalar("SELECT count(*) FROM completions WHERE purpose = 'mc_value'") == 24
    assert wh.scalar("SELECT sum(completion_tokens) FROM step_labels") == 240


def test_tree_reuse_counts_the_rollout_itself_and_draws_only_the_rest():
    backend = ScriptedBackend(by_depth)
    r = rollout("r1", steps_of(3), is_correct=False)  # written by the completer's own model
    labels = label_mc_value([r], Completer(LLMClient(backend)), MCValueConfig(k=8))
    assert [backend.drawn_from(r.steps[:i + 1]) for i in range(3)] == [7, 7, 7]
    # the rollout's own (failed) sample + the first 7 scripted draws (2 successes among them)
    assert [l.value for l in labels] == [2 / 8, 0.0, 0.0]
    assert [l.evidence["reused_samples"] for l in labels] == [1, 1, 1]


def test_identical_prefixes_of_two_rollouts_are_estimated_once():
    backend = ScriptedBackend(lambda prefix, drawn: len(prefix) < 3 and drawn % 2 == 0)
    shared = steps_of(2)
    a = rollout("a", shared + ["Step 3: one ending, 2 + 1 = 3."], False, policy_model="x")
    b = rollout("b", shared + ["Step 3: another ending, 2 + 2 = 4."], False, policy_model="x")
    labels = label_mc_value([a, b], Completer(LLMClient(backend)), MCValueConfig(k=4))
    assert backend.drawn_from(shared[:1]) == 4 and backend.drawn_from(shared) == 4
    la = {l.step_index: l for l in labels if l.rollout_id == "a"}
    lb = {l.step_index: l for l in labels if l.rollout_id == "b"}
    assert la[1].value == lb[1].value == 0.5
    assert (la[1].calls, lb[1].calls) == (4, 0) and lb[1].evidence["shared_estimate"]
    assert la[2].calls == lb[2].calls == 4  # the last steps differ: two estimates
    assert sum(l.calls for l in labels) == 4 * 4


def test_early_stop_stops_at_the_first_success_and_counts_the_saved_cost():
    outcomes = {1: [False, False, True, False] + [False] * 4, 2: [False] * 8}
    backend = ScriptedBackend(lambda p, d: outcomes[len(p)][d], tokens_per_sample=10)
    r = rollout("r1", steps_of(2), False, policy_model="x")
    labels = label_mc_value([r], Completer(LLMClient(backend)),
                            MCValueConfig(k=8, reuse_tree=False, early_stop=True, chunk_size=2))
    first, second = labels
    assert backend.drawn_from(r.steps[:1]) == 4  # two chunks of 2; the success is in the second
    assert first.hard_label is True and first.value == 1 / 4 and first.calls == 4
    assert first.evidence["early_stopped"] and first.evidence["samples_saved"] == 4
    assert first.evidence["est_completion_tokens_saved"] == 40
    assert backend.drawn_from(r.steps) == 8 and second.hard_label is False
    assert not second.evidence["early_stopped"] and second.evidence["samples_saved"] == 0


def test_a_failed_request_is_a_failure_row_not_a_label():
    backend = ScriptedBackend(by_depth, fail_on=lambda prefix: len(prefix) == 2)
    completer = Completer(LLMClient(backend), run_id="run1")
    labels = label_mc_value([rollout("r1", steps_of(3), False, policy_model="x")], completer,
                            MCValueConfig(k=8, reuse_tree=False))
    assert [l.step_index for l in labels] == [0, 2]
    stages = sorted({f["stage"] for f in completer.failures.rows})
    assert stages == ["label:mc_value"]
    assert any("r1:1" == f["item_id"] for f in completer.failures.rows)
    assert any("could not be sampled" in f["reason"] for f in completer.failures.rows)



def answered(n: int, answer: str, tag: str = "") -> list[str]:
    """`n` steps, the last one stating a final answer (as the solve prompts ask)."""
    return steps_of(n - 1, tag) + [f"Step {n}: {tag}so {n - 1} + 1 = {n}. The answer is \\boxed{{{answer}}}."]


def test_the_last_step_of_an_answered_rollout_is_valued_by_its_own_answer():
    # Every continuation reaches the gold answer, even one sampled after a finished wrong solution
    # (a completer that recomputes what the rollout left out): only the terminal rule sees the error.
    backend = ScriptedBackend(lambda prefix, drawn: True)
    wrong = rollout("w", answered(2, "9"), is_correct=False, policy_model="x")
    right = rollout("r", answered(2, "7", tag="other "), is_correct=True, policy_model="x")
    before = label_mc_value([wrong], Completer(LLMClient(backend)), MCValueConfig(k=4))
    assert [l.hard_label for l in before] == [True, True]  # the wrong final step came out good
    backend = ScriptedBackend(lambda prefix, drawn: True)
    labels = label_mc_value([wrong, right], Completer(LLMClient(backend)),
                            MCValueConfig(k=4, terminal_outcome=True))
    by = {(l.rollout_id, l.step_index): l for l in labels}
    assert (by["w", 1].value, by["w", 1].hard_label) == (0.0, False)
    assert (by["r", 1].value, by["r", 1].hard_label) == (1.0, True)
    assert by["w", 1].evidence["terminal"] and by["w", 1].calls == 0 and by["w", 1].completion_tokens == 0
    assert by["w", 0].hard_label is True and by["w", 0].calls == 4  # earlier steps: Monte Carlo as before
    assert backend.drawn_from(wrong.steps) == 0 and backend.drawn_from(right.steps) == 0


def test_a_rollout_without_a_final_answer_has_its_last_step_sampled_as_before():
    backend = ScriptedBackend(lambda prefix, drawn: drawn == 0)
    cut = rollout("c", steps_of(2), is_correct=False, policy_model="x")  # no answer: cut at max_tokens
    labels = label_mc_value([cut], Completer(LLMClient(backend)), MCValueConfig(k=4, terminal_outcome=True))
    assert backend.drawn_from(cut.steps) == 4
    assert labels[1].value == 0.25 and labels[1].evidence["terminal"] is False


def test_a_terminal_step_that_is_another_rollouts_inner_prefix_is_still_estimated_for_that_one():
    backend = ScriptedBackend(lambda prefix, drawn: True)
    short = rollout("s", answered(1, "1"), is_correct=False, policy_model="x")  # stopped after step 1
    longer = rollout("l", list(short.steps) + ["Step 2: one more, so 1 + 6 = 7. The answer is \\boxed{7}."],
                     is_correct=True, policy_model="x")
    labels = label_mc_value([short, longer], Completer(LLMClient(backend)),
                            MCValueConfig(k=4, terminal_outcome=True))
    by = {(l.rollout_id, l.step_index): l for l in labels}
    assert by["s", 0].hard_label is False and by["s", 0].evidence["terminal"]
    assert by["l", 0].hard_label is True and by["l", 0].calls > 0  # the same text, not the end here
    assert by["l", 1].evidence["terminal"] and by["l", 1].hard_label is True

# ---------------------------------------------------------------- omega_prm
@pytest.mark.parametrize("first_error", range(7))
@pytest.mark.parametrize("early_stop", [False, True])
def test_binary_search_finds_the_known_first_error(first_error, early_stop):
    # a prefix of j steps is still good iff it has no wrong step: j <= first_error
    backend = ScriptedBackend(lambda p, d: len(p) <= first_error and d % 2 == 1)
    r = rollout("r1", steps_of(7), is_correct=False, policy_model="x")
    cfg = OmegaPRMConfig(k=8, continue_search=False, early_stop=early_stop)
    labels = label_omega_prm([r], Completer(LLMClient(backend)), cfg)
    assert [l.hard_label for l in labels] == [i < first_error for i in range(7)]
    assert {l.evidence["first_error_found"] for l in labels} == {first_error}
    estimated = [l.step_index for l in labels if l.evidence["estimated"]]
    assert len(estimated) <= math.ceil(math.log2(7))  # log2 estimates, not one per step
    drawn = sum(backend.drawn.values())
    assert drawn <= 8 * len(estimated) and drawn == sum(l.calls for l in labels)
    if early_stop:  # a good prefix needs 2 draws (success on the 2nd); a bad one all 8
        assert all(l.evidence["samples_saved"] == 6 for l in labels if l.evidence["estimated"] and l.hard_label)


def test_correct_rollouts_need_no_search():
    backend = ScriptedBackend(lambda p, d: True)
    labels = label_omega_prm([rollout("r1", steps_of(4), True)], Completer(LLMClient(backend)))
    assert [l.hard_label for l in labels] == [True] * 4 and sum(backend.drawn.values()) == 0


def test_selection_score_is_q_plus_u():
    cfg = OmegaPRMConfig()
    state = TreeNode("n", "p", None, 0, None, visits=3, mc_successes=1, mc_samples=4)
    q = 0.5 ** (1 - 0.25) * 0.9 ** (250 / 500)
    u = 0.125 * math.sqrt(20) / (1 + 3)
    assert selection_score(state, 250, 20, cfg) == pytest.approx(q + u)
    # shorter rollouts and more confident states rank higher
    assert selection_score(state, 100, 20, cfg) > selection_score(state, 400, 20, cfg)


def test_the_rollout_budget_bounds_sampling_and_unsearched_steps_abstain():
    backend = ScriptedBackend(lambda p, d: len(p) <= 2)
    rs = [rollout(f"r{i}", steps_of(7, tag=f"v{i} "), False, policy_model="x") for i in range(4)]
    labels = label_omega_prm(rs, Completer(LLMClient(backend)),
                             OmegaPRMConfig(k=8, rollout_budget=20, continue_search=False))
    assert sum(backend.drawn.values()) <= 20 + 8  # the last estimate may finish past the budget
    unsearched = [l for l in labels if not l.evidence["searched"]]
    assert unsearched and all(l.hard_label is None for l in unsearched)


def test_the_mcts_goes_on_to_wrong_completions_it_found():
    # after the rollout's good first step, every other completion slips and fails: a state with
    # 0 < MC < 1 and wrong completions from it, which the MCTS then searches in turn
    def script(prefix, drawn):
        if len(prefix) == 1:
            return (True, None) if drawn % 2 == 0 else (False, f"Step 2: slip {drawn}, 1 + 1 = 3.")
        return False
    backend = ScriptedBackend(script)
    r = rollout("r1", steps_of(4), False, policy_model="x")
    completer = Completer(LLMClient(backend))
    label_omega_prm([r], completer, OmegaPRMConfig(k=4, search_limit=5))
    path_ids = {n.node_id for n in completer.tree.path(r.problem_id, r.steps)}
    assert any(n.visits > 0 for n in completer.tree.nodes.values() if n.node_id not in path_ids)
    labels = label_omega_prm([r], Completer(LLMClient(ScriptedBackend(script))),
                             OmegaPRMConfig(k=4, search_limit=5, continue_search=False))
    assert [l.hard_label for l in labels] == [True, False, False, False]


# ---------------------------------------------------------------- progress
def test_progress_is_the_change_in_the_provers_success_rate():
    q = {0: [True] * 4 + [False] * 4, 1: [True] * 6 + [False] * 2, 2: [False] * 8}
    prover_backend = ScriptedBackend(lambda p, d: q[len(p)][d], model="prover")
    r = rollout("r1", steps_of(2), is_correct=False, policy_model="policy")
    prover = Completer(LLMClient(prover_backend))
    labels = label_progress([r], prover, ProgressConfig(k=8, prover_model="prover"))
    assert [l.value for l in labels] == [pytest.approx(0.25), pytest.approx(-0.75)]
    assert [l.hard_label for l in labels] == [True, False]
    assert [l.evidence["prover_model"] for l in labels] == ["prover", "prover"]
    assert prover.tree.root(r.problem_id).mc_samples == 8  # the policy's rollout is not a prover sample
    assert sum(l.calls for l in labels) == 24  # three prefixes, 8 each, each paid once
    with pytest.raises(ValueError, match="prover model"):
        label_progress([r], prover, ProgressConfig(prover_model="some-other-prover"))


# ---------------------------------------------------------------- sibling
def test_identical_steps_share_one_value_and_advantages_are_fork_relative():
    good, bad = "Step 1: the right move, 2 + 2 = 4.", "Step 1: a slip, 2 + 2 = 5."

    def script(prefix, drawn):
        if not prefix:  # the alternatives sampled at the question
            return (drawn % 2 == 0, good if drawn % 2 == 0 else bad)
        return prefix[0] == good
    backend = ScriptedBackend(script)
    a = rollout("a", [good, "Step 2: so 4 + 3 = 7."], True, policy_model="x")
    b = rollout("b", [good, "Step 2: so 4 + 3 = 8."], False, policy_model="x")
    c = rollout("c", [bad, "Step 2: so 5 + 3 = 8."], False, policy_model="x")
    completer = Completer(LLMClient(backend))
    labels = label_sibling([a, b, c], completer, SiblingConfig(k=4))
    first = {l.rollout_id: l for l in labels if l.step_index == 0}
    assert first["a"].evidence["node_id"] == first["b"].evidence["node_id"]
    assert first["a"].value == first["b"].value == pytest.approx(0.5)  # 1 - mean(1, 0)
    assert first["c"].value == pytest.approx(-0.5)
    assert (first["a"].hard_label, first["c"].hard_label) == (True, False)
    assert first["a"].calls == 5 and first["b"].calls == 0  # one fork, k + 1 siblings, paid once
    pairs = step_preference_pairs(completer.tree, min_margin=0.5)
    root_pairs = [p for p in pairs if p["prefix"] == []]
    assert [(p["chosen"], p["rejected"]) for p in root_pairs] == [(good, bad)]


def test_the_registry_names_each_labeler_once():
    assert {"mc_value", "omega_prm", "sibling", "progress"} <= set(LABELERS)
    assert LABELERS["omega_prm"].config().k == 8
