"""A problem whose gold answer is prose, yes/no or several forms is never graded: it gets a reason, not zeros."""

from __future__ import annotations

from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.rollouts import RolloutConfig, generate_rollouts
from prm_data.sources.bank import generate_bank


def test_a_stored_problem_with_a_prose_gold_is_not_sampled_and_says_why():
    problems = [p.to_row("run1") for p in generate_bank(2, seed=3, difficulty=(3, 4), ops="+-")]
    problems[1] = {**problems[1], "answer": "3 is the only possible value"}  # e.g. stored before validation refused it
    batch = generate_rollouts(problems, LLMClient(SimBackend(error_rate=0.0)), RolloutConfig(n=3), "run1")
    assert {r["problem_id"] for r in batch.rollouts} == {problems[0]["problem_id"]}
    [failure] = batch.failures
    assert failure["item_id"] == problems[1]["problem_id"] and failure["stage"] == "rollout"
    assert "cannot be graded: prose answer" in failure["reason"]
    assert all(r["answer_status"] == "correct" for r in batch.rollouts)
