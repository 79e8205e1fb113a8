"""Progress labels in advantage mode (Rewarding Progress, arXiv 2410.08146): bad = a drop beyond noise."""

from __future__ import annotations

import pytest
from mc_helpers import ScriptedBackend, rollout, steps_of

from prm_data.labelers.progress import ProgressConfig, drop_p_value, label_progress, ratio_probability
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.rollouts import RolloutConfig, generate_rollouts
from prm_data.sources.bank import generate_bank
from prm_data.trees.sampling import Completer


def _prover(q: dict[int, list[bool]]) -> tuple[Completer, ScriptedBackend]:
    """A prover whose d-th completion after j steps succeeds as q[j][d % len(q[j])] says."""
    backend = ScriptedBackend(lambda p, d: q[len(p)][d % len(q[len(p)])], model="prover")
    return Completer(LLMClient(backend)), backend


def _labels(q: dict[int, list[bool]], mode: str, k: int = 8, max_k: int = 8, steps: int = 2):
    """Progress labels of one rollout whose prover succeeds after j steps as `q[j]` says."""
    prover, _ = _prover(q)
    r = rollout("r1", steps_of(steps), is_correct=False, policy_model="policy")
    return label_progress([r], prover, ProgressConfig(k=k, label_mode=mode, max_k=max_k))


def test_a_small_drop_a_weak_prover_cannot_tell_from_noise_in_k_samples_is_not_a_bad_step():
    # the prover finishes 1 in 8 before the step and 0 in 8 after it: nothing is shown
    q = {0: [True] + [False] * 7, 1: [False] * 8, 2: [False] * 8}
    advantage = _labels(q, "advantage")
    assert advantage[0].value == pytest.approx(-0.125)
    assert advantage[0].hard_label is True and advantage[0].evidence["drop_p_value"] > 0.05
    assert _labels(q, "hard_estimate")[0].hard_label is False  # Math-Shepherd's hard estimate calls it bad


def test_sequential_sampling_makes_the_same_drop_significant_with_more_completions():
    q = {0: [True] + [False] * 7, 1: [False] * 8, 2: [False] * 8}
    first = _labels(q, "advantage", max_k=32)[0]
    assert first.hard_label is False and first.evidence["drop_p_value"] < 0.05
    assert first.evidence["q_prefix_samples"] > 8 and first.evidence["q_next_samples"] <= 32


def test_with_a_weak_prover_advantage_labels_find_the_first_error_the_hard_estimate_misplaces():
    # Step 0 is right, step 1 wrong. The prover finishes 1 in 16 before and after step 0, never after
    # step 1: the hard estimate (0 of the first 8 succeed after step 0) calls step 0 bad, k = 8
    # advantages see no drop anywhere, sequential sampling shows the drop at step 1 and only there.
    rare = [False] * 15 + [True]
    q = {0: rare, 1: rare, 2: [False] * 16}
    hard = [label.hard_label for label in _labels(q, "hard_estimate")]
    fixed_k = [label.hard_label for label in _labels(q, "advantage", max_k=8)]
    sequential = [label.hard_label for label in _labels(q, "advantage", max_k=64)]
    assert hard == [False, False]
    assert fixed_k == [True, True]
    assert sequential == [True, False]


def test_a_step_settled_in_k_samples_gets_no_more_and_steps_after_a_drop_get_none():
    # a sure prover: step 0 keeps it sure, step 1 takes it to never, steps 2-3 follow the error
    q = {0: [True], 1: [True], 2: [False], 3: [False], 4: [False]}
    prover, backend = _prover(q)
    r = rollout("r1", steps_of(4), is_correct=False, policy_model="policy")
    labels = label_progress([r], prover, ProgressConfig(k=8, max_k=64))
    assert [label.hard_label for label in labels] == [True, False, True, True]
    assert [backend.drawn_from(r.steps[:j]) for j in range(5)] == [8] * 5
    assert {label.evidence["sampling_rounds"] for label in labels} == {0}


def test_max_k_below_k_is_refused():
    with pytest.raises(ValueError, match="max_k"):
        ProgressConfig(k=8, max_k=4)


def test_a_drop_to_a_quarter_is_ruled_out_only_with_enough_successes():
    assert ratio_probability(0, 8, 0, 8, 0.25) > 0.05  # no successes: nothing is ruled out
    assert ratio_probability(2, 8, 2, 8, 0.25) > ratio_probability(8, 32, 8, 32, 0.25)
    assert ratio_probability(8, 32, 8, 32, 0.25) < 0.05
    assert ratio_probability(6, 64, 0, 64, 0.25) > 0.5  # none after: a deep drop is likely


def test_a_step_that_takes_the_prover_from_likely_to_never_is_bad_with_its_p_value():
    q = {0: [True] * 5 + [False] * 3, 1: [False] * 8, 2: [False] * 8}
    first, second = _labels(q, "advantage", max_k=32)
    assert first.hard_label is False and first.evidence["drop_p_value"] < 0.01
    assert first.value == pytest.approx(-5 / 8)
    assert second.hard_label is True and second.value == 0.0  # after the error, nothing left to lower


def test_a_step_that_raises_the_provers_chances_is_good_in_both_modes():
    q = {0: [True] * 2 + [False] * 6, 1: [True] * 6 + [False] * 2, 2: [True] * 8}
    for mode in ("advantage", "hard_estimate"):
        assert [l.hard_label for l in _labels(q, mode)] == [True, True]


def test_the_same_drop_becomes_significant_with_more_samples():
    assert drop_p_value(3, 8, 1, 8) > 0.05
    assert drop_p_value(30, 80, 10, 80) < 0.01
    assert drop_p_value(0, 8, 0, 8) == 1.0 and drop_p_value(8, 8, 8, 8) == 1.0
    assert drop_p_value(1, 8, 5, 8) > 0.9  # a rise is never a drop


def _first_bad(labels) -> dict[str, int]:
    out: dict[str, int] = {}
    for label in sorted(labels, key=lambda l: l.step_index):
        if label.hard_label is False:
            out.setdefault(label.rollout_id, label.step_index)
    return out


def test_with_a_completer_that_solves_one_problem_in_ten_sequential_sampling_finds_more_first_errors():
    # the synthetic policy's rollouts (true first error known) labeled with a far weaker prover
    problems = [p.to_row("t") for p in generate_bank(10, seed=11, difficulty=(3, 6), ops="+-*")]
    policy = LLMClient(SimBackend(model="sim-policy"))
    batch = generate_rollouts(problems, policy, RolloutConfig(n=8, skip_uniform=True), "t")
    rollouts = batch.for_labeling()

    def found(max_k: int) -> tuple[int, int]:
        prover = Completer(LLMClient(SimBackend(model="sim-completer", solve_rate=0.1)))
        first = _first_bad(label_progress(rollouts, prover, ProgressConfig(max_k=max_k)))
        hits = sum(first.get(r.rollout_id) == r.true_first_error for r in rollouts if r.true_first_error != -1)
        false_alarms = sum(r.rollout_id in first for r in rollouts if r.true_first_error == -1)
        return hits, false_alarms

    (fixed, fixed_alarms), (sequential, sequential_alarms) = found(8), found(32)
    assert sequential >= 1.5 * fixed
    assert fixed_alarms == sequential_alarms == 0  # neither calls a step of an error-free rollout bad
