"""VeRPO dense step values: test weights from the group's pass rates, weighted partial success, global outcome."""

from __future__ import annotations

import pytest

from prm_data.labelers.registry import spec
from prm_data.labelers.verpo import VeRPOConfig, dense_score, difficulty_weights, pass_rates, reward, step_values
from prm_data.verifiers import protocol as verifier
from prm_data.verifiers.protocol import Outcome


def outcome(*passed: int) -> Outcome:
    tests = tuple(verifier.TestResult(f"t{j}", bool(p), 0.01) for j, p in enumerate(passed))
    every = all(passed)
    return Outcome("correct" if every else "incorrect", sum(passed) / len(passed), "code", "1", tests=tests)


def crashed() -> Outcome:  # the program never ran its tests
    return Outcome("error", 0.0, "code", "1", reason="SyntaxError")


# A group of four continuations of one problem, two from each of two step prefixes, over three tests.
# Test 0 passed by all (rho 1), test 1 by two of four (rho 1/2), test 2 by one (rho 1/4):
# difficulties 0, 1/2, 3/4 -> weights 0, 2/5, 3/5.
STEP_0 = [outcome(1, 1, 0), outcome(1, 0, 0)]
STEP_1 = [outcome(1, 1, 1), outcome(1, 0, 0)]


def test_pass_rates_and_weights_of_a_hand_built_group():
    rates = pass_rates(STEP_0 + STEP_1, 3)
    assert rates == [1.0, 0.5, 0.25]
    assert difficulty_weights(rates) == pytest.approx([0.0, 0.4, 0.6])


def test_a_harder_test_weighs_more_than_an_easier_one():
    weights = difficulty_weights([0.9, 0.5, 0.1])
    assert weights[0] < weights[1] < weights[2] and sum(weights) == pytest.approx(1.0)


def test_step_values_are_the_mean_reward_of_their_continuations():
    values, weights, _ = step_values([STEP_0, STEP_1], 3, VeRPOConfig(dense_weight=1.0))
    # step 0: dense 0.4 and 0, no full pass -> rewards 0.2 and 0; step 1: a full pass (1) and dense 0 (0)
    assert values == pytest.approx([0.1, 0.5])
    assert weights == pytest.approx([0.0, 0.4, 0.6])


def test_partial_success_never_outranks_full_success():
    weights = [0.2, 0.3, 0.5]
    best_partial = reward(outcome(0, 1, 1), weights, dense_weight=1.0)
    assert best_partial == pytest.approx(0.4) and reward(outcome(1, 1, 1), weights, 1.0) == 1.0


def test_without_the_dense_part_the_value_is_the_plain_success_rate():
    values, _, _ = step_values([STEP_0, STEP_1], 3, VeRPOConfig(dense_weight=0.0))
    assert values == [0.0, 0.5]


def test_equal_weights_when_no_test_is_ever_failed():
    values, weights, _ = step_values([[outcome(1, 1)], [outcome(1, 1)]], 2)
    assert weights == [0.5, 0.5] and values == [1.0, 1.0]


def test_smoothing_gives_a_test_everyone_passes_some_weight():
    assert difficulty_weights([1.0, 0.0], smoothing=1.0) == pytest.approx([1 / 3, 2 / 3])


def test_a_program_that_never_ran_its_tests_passes_none_and_counts_in_the_group():
    rates = pass_rates([outcome(1, 1), crashed()], 2)
    assert rates == [0.5, 0.5]
    assert dense_score(crashed(), [0.5, 0.5]) == 0.0


def test_per_test_results_out_of_the_problems_test_count_are_refused():
    with pytest.raises(ValueError, match="2 test results for a problem of 3 tests"):
        pass_rates([outcome(1, 0)], 3)


def test_a_step_without_continuations_has_no_value():
    values, _, _ = step_values([[outcome(1, 0)], []], 2)
    assert values[1] is None


def test_it_is_registered_as_a_monte_carlo_signal_that_expands_the_tree():
    entry = spec("verpo")
    assert entry.role == "mc" and entry.needs == frozenset({"completer", "tree"})
