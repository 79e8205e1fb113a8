"""Rubric generation (reference and contrastive), storage, and rubric-graded judging."""

from __future__ import annotations

import dataclasses

from prm_data.failures import FailureLog
from prm_data.labelers.judge_vote import JudgeSpec, JudgeVoteConfig, build_request, judge_solutions
from prm_data.labelers.rubric import (Rubric, RubricProblem, generate_contrastive_rubrics, generate_rubrics,
                                      label_with_rubrics, parse_rubric)
from prm_data.labelers.sim_truth import sim_rollouts
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.sources.bank import generate_bank
from prm_data.warehouse import Warehouse


def rubric_problems(n: int, seed: int = 0) -> list[RubricProblem]:
    return [RubricProblem(p.problem_id, p.question, str(p.answer), p.reference_solution)
            for p in generate_bank(n, seed=seed, difficulty=3)]


def test_rubric_sections_are_parsed_in_common_markdown_spellings():
    text = ("## Hard Rules\n1. The total must be 12.\n2) The answer is 4.\n\n"
            "**Principles:**\n* Show each operation.\n- No jumps.\n")
    assert parse_rubric(text) == (("The total must be 12.", "The answer is 4."),
                                  ("Show each operation.", "No jumps."))
    assert parse_rubric("I am not sure what a rubric is.") is None


def test_a_reference_rubric_per_problem_is_stored_with_its_prompt_version(tmp_path):
    problems = rubric_problems(3)
    rubrics = generate_rubrics(problems, LLMClient(SimBackend(model="sim-judge")))
    assert [r.problem_id for r in rubrics] == [p.problem_id for p in problems]
    first = rubrics[0]
    assert first.kind == "reference" and first.prompt_version == "rubric.v1" and first.model == "sim-judge"
    assert len(first.hard_rules) == 4 and first.hard_rules[-1].startswith("The final answer must be")
    assert first.principles and first.prompt_tokens > 0
    wh = Warehouse(tmp_path)
    wh.write_shard("rubrics", [r.to_row("run-1") for r in rubrics], run_id="run-1", shard="rubrics")
    rows = wh.rows("SELECT * FROM rubrics ORDER BY problem_id")
    assert {r["prompt_version"] for r in rows} == {"rubric.v1"}
    assert Rubric.from_row(next(r for r in rows if r["rubric_id"] == first.rubric_id)) == first


def test_an_answer_that_is_not_a_rubric_becomes_a_failure_row_not_an_empty_rubric():
    failures = FailureLog("run-1")
    rubrics = generate_rubrics(rubric_problems(2), LLMClient(SimBackend(model="sim-policy")), failures=failures)
    assert rubrics == []
    assert len(failures) == 2 and all("no usable 'Hard rules:'" in f["reason"] for f in failures.rows)
    assert all(f["input"] for f in failures.rows)  # the raw answer is kept


def test_contrastive_rubrics_only_for_problems_with_a_right_and_a_wrong_rollout():
    rollouts = sim_rollouts(8, per_problem=4, error_rate=0.3, seed=3)
    solutions = [r.solution for r in rollouts]
    mixed = {s.problem_id for s in solutions if s.is_correct} & {s.problem_id for s in solutions if not s.is_correct}
    rubrics = generate_contrastive_rubrics(solutions, LLMClient(SimBackend(model="sim-judge")))
    assert mixed and {r.problem_id for r in rubrics} == mixed
    assert all(r.kind == "contrastive" and r.prompt_version == "rubric_contrastive.v1" for r in rubrics)
    assert len({r.rubric_id for r in rubrics}) == len(rubrics)


def test_rubric_graded_judging_puts_the_rubric_in_the_prompt_and_its_rules_help_the_judge():
    rollouts = sim_rollouts(150, per_problem=4, error_rate=0.3, seed=6)
    solutions = [r.solution for r in rollouts]
    truth = {r.solution.rollout_id: r for r in rollouts}
    problems = {p.problem_id: p for p in generate_bank(150, seed=6, difficulty=(3, 5))}
    client = LLMClient(SimBackend(model="sim-judge"))  # follows a rubric's rule for a step half the time
    rubrics = generate_rubrics([RubricProblem(pid, p.question, str(p.answer), p.reference_solution)
                                for pid, p in problems.items()], client)
    config = JudgeVoteConfig(judges=(JudgeSpec(name="judge", samples=1),))
    request = build_request(solutions[0], config.judges[0], config.prompt, "rubric",
                            next(r for r in rubrics if r.problem_id == solutions[0].problem_id))
    assert "<rubric>\nHard rules:\n- The solution must compute" in request.messages[-1].content
    graded = label_with_rubrics(solutions, rubrics, {"judge": client}, config, "run-1")
    plain = judge_solutions(solutions, {"judge": client}, config, "run-1")  # same judge, no rubric

    def accuracy(labels):
        return sum(l.hard_label == truth[l.rollout_id].step_is_good(l.step_index) for l in labels) / len(labels)

    assert all(l.labeler == "rubric" for l in graded.labels)
    assert {j["mode"] for j in graded.judgments} == {"rubric"}
    assert {j["rubric_id"] for j in graded.judgments} <= {r.rubric_id for r in rubrics}
    assert accuracy(graded.labels) > accuracy(plain.labels) + 0.05
    # the gain comes from what the rubric says: with only its principles (no rule names a step) it is gone
    principles_only = [dataclasses.replace(r, hard_rules=(f"The final answer must be {problems[r.problem_id].answer}.",))
                       for r in rubrics]
    vague = label_with_rubrics(solutions, principles_only, {"judge": client}, config, "run-1")
    assert abs(accuracy(vague.labels) - accuracy(plain.labels)) < 0.03


def test_a_solution_whose_problem_has_no_rubric_is_skipped_with_a_failure():
    rollouts = sim_rollouts(2, per_problem=1, error_rate=0.0, seed=1)
    failures = FailureLog("run-1")
    result = label_with_rubrics([r.solution for r in rollouts], [], {"judge": LLMClient(SimBackend(model="sim-judge"))},
                                JudgeVoteConfig(judges=(JudgeSpec(name="judge"),)), "run-1", failures=failures)
    assert result.labels == [] and len(failures) == 2
    assert failures.rows[0]["stage"] == "label:rubric"
