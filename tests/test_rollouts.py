"""Rollout generation on the synthetic policy, whose first errors are known."""

from __future__ import annotations

from mc_helpers import ScriptedBackend

from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend, true_first_error
from prm_data.llm.types import BackendError, GenerationRequest
from prm_data.prompts import render
from prm_data.rollouts import RolloutConfig, generate_rollouts, rollouts_from_rows
from prm_data.sources.bank import generate_bank, parse_question
from prm_data.trees.prefix_tree import prefix_node_ids
from prm_data.warehouse import Warehouse


def problems(count=4, seed=3):
    return [p.to_row("run1") for p in generate_bank(count, seed=seed, difficulty=(3, 5), ops="+-*")]


def test_rollouts_are_stored_split_graded_and_carry_the_true_first_error(tmp_path):
    probs = problems()
    batch = generate_rollouts(probs, LLMClient(SimBackend(error_rate=0.2)), RolloutConfig(n=6), "run1")
    assert len(batch.rollouts) == 4 * 6 and not batch.failures
    assert 0 < sum(r["is_correct"] for r in batch.rollouts) < 24
    assert {r["true_first_error"] for r in batch.rollouts} > {-1, 0}
    wh = Warehouse(tmp_path / "wh")
    paths = batch.write(wh, shard="rollouts-0")
    assert set(paths) == {"rollouts", "steps", "completions"}
    assert wh.scalar("SELECT count(*) FROM completions WHERE purpose = 'rollout'") == 24
    assert wh.scalar("SELECT count(*) FROM steps") == sum(r["num_steps"] for r in batch.rollouts)
    steps_by_rollout = {}
    for s in batch.steps:
        steps_by_rollout.setdefault(s["rollout_id"], []).append(s)
    for row in batch.rollouts:
        problem = parse_question(next(p["question"] for p in probs if p["problem_id"] == row["problem_id"]))
        steps = [s["text"] for s in sorted(steps_by_rollout[row["rollout_id"]], key=lambda s: s["step_index"])]
        assert row["true_first_error"] == true_first_error(problem, steps)
        assert row["is_correct"] == (row["answer_status"] == "correct")
        assert row["is_correct"] == (row["final_answer"] == str(problem.answer))
        assert [s["node_id"] for s in sorted(steps_by_rollout[row["rollout_id"]],
                                             key=lambda s: s["step_index"])] == prefix_node_ids(row["problem_id"], steps)
    again = generate_rollouts(probs, LLMClient(SimBackend(error_rate=0.2)), RolloutConfig(n=6), "run1")
    assert [r["rollout_id"] for r in again.rollouts] == [r["rollout_id"] for r in batch.rollouts]
    loaded = rollouts_from_rows(probs, wh.rows("SELECT * FROM rollouts"), wh.rows("SELECT * FROM steps"))
    assert sorted(r.rollout_id for r in loaded) == sorted(r.rollout_id for r in batch.for_labeling())


def test_problems_whose_rollouts_all_agree_are_flagged_and_optionally_skipped():
    probs = problems(count=2)
    perfect = generate_rollouts(probs, LLMClient(SimBackend(error_rate=0.0)),
                                RolloutConfig(n=4, skip_uniform=True), "run1")
    assert set(perfect.outcomes.values()) == {"all_correct"}
    assert perfect.skipped == {p["problem_id"] for p in probs} and perfect.for_labeling() == []
    assert {r["problem_outcome"] for r in perfect.rollouts} == {"all_correct"}
    assert all(p["answer"] != "8" for p in probs)  # the scripted policy below always answers 8
    hopeless = generate_rollouts(probs, LLMClient(ScriptedBackend(lambda prefix, drawn: False)),
                                 RolloutConfig(n=4), "run1")
    assert set(hopeless.outcomes.values()) == {"all_incorrect"}
    assert not hopeless.skipped and len(hopeless.for_labeling()) == 8  # flagged, kept without skip_uniform


class FailsForOneProblem(SimBackend):
    async def generate_one(self, request, sample_index):
        if "Then" in request.messages[-1].content and sample_index >= 2 and self.bad in request.messages[-1].content:
            raise BackendError("server went away", retryable=False)
        return await super().generate_one(request, sample_index)


def test_failed_requests_become_failures_rows_not_rows_of_none(tmp_path):
    probs = problems(count=2)
    backend = FailsForOneProblem()
    backend.bad = probs[1]["question"]
    batch = generate_rollouts(probs, LLMClient(backend), RolloutConfig(n=4), "run1")
    counts = {p["problem_id"]: sum(r["problem_id"] == p["problem_id"] for r in batch.rollouts) for p in probs}
    assert counts == {probs[0]["problem_id"]: 4, probs[1]["problem_id"]: 2}
    assert [(f["stage"], f["item_id"]) for f in batch.failures] == [("rollout", probs[1]["problem_id"])]
    assert "2 of 4 rollouts" in batch.failures[0]["reason"]
    assert all(r["text"] and r["answer_status"] for r in batch.rollouts)
    wh = Warehouse(tmp_path / "wh")
    batch.write(wh, shard="r")
    assert wh.scalar("SELECT count(*) FROM failures WHERE stage = 'rollout'") == 1


def test_the_synthetic_policy_solves_the_asked_question_of_a_few_shot_prompt():
    example, asked = generate_bank(2, seed=9, difficulty=3, ops="+-*")
    prompt = render("solve.v1", question=asked.question,
                    examples=[{"question": example.question, "solution": example.reference_solution}])
    text, meta = SimBackend(error_rate=0.0).complete(GenerationRequest(messages=prompt.messages), "k")
    assert meta["answer"] == asked.answer != example.answer
    assert text.endswith(f"\\boxed{{{asked.answer}}}.")
