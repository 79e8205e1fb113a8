"""Progress labels in advantage mode (Rewarding Progress, arXiv 2410.08146): bad = a drop beyond noise."""

from __future__ import annotations

import pytest
from mc_helpers import ScriptedBackend, rollout, steps_of

from prm_data.labelers.progress import ProgressConfig, drop_p_value, label_progress
from prm_data.llm.client import LLMClient
from prm_data.trees.sampling import Completer


def _labels(q: dict[int, list[bool]], mode: str, k: int = 8):
    """Progress labels of one 2-step rollout whose prover succeeds after j steps as `q[j]` says."""
    prover = Completer(LLMClient(ScriptedBackend(lambda p, d: q[len(p)][d % len(q[len(p)])], model="prover")))
    r = rollout("r1", steps_of(2), is_correct=False, policy_model="policy")
    return label_progress([r], prover, ProgressConfig(k=k, label_mode=mode))


def test_a_small_drop_a_weak_prover_cannot_tell_from_noise_is_not_a_bad_step():
    # the prover finishes 1 in 8 before the step and 0 in 8 after it: nothing is shown
    q = {0: [True] + [False] * 7, 1: [False] * 8, 2: [False] * 8}
    advantage = _labels(q, "advantage")
    assert advantage[0].value == pytest.approx(-0.125)
    assert advantage[0].hard_label is True and advantage[0].evidence["drop_p_value"] > 0.05
    assert _labels(q, "hard_estimate")[0].hard_label is False  # Math-Shepherd's hard estimate calls it bad


def test_a_step_that_takes_the_prover_from_likely_to_never_is_bad_with_its_p_value():
    q = {0: [True] * 5 + [False] * 3, 1: [False] * 8, 2: [False] * 8}
    first, second = _labels(q, "advantage")
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
