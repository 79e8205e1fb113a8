"""Reference matching on code: steps matched by the values they establish on the tests, traced in the sandbox."""

from __future__ import annotations

import json

import pytest

from prm_data.failures import FailureLog
from prm_data.labelers.code_trace import code_of_steps, trace_solution
from prm_data.labelers.reference_match import ReferenceMatchConfig, label_reference_match
from prm_data.labelers.sandbox import SandboxConfig
from prm_data.rollouts import RolloutSteps
from prm_data.verifiers.protocol import OutcomeSpec

TESTS = ["assert mean_of_squares([1, 2, 3]) == 14 / 3", "assert mean_of_squares([3]) == 9",
         "assert mean_of_squares([1, 1]) == 1"]
SPEC = OutcomeSpec("code", tests=tuple(TESTS), entry_point="mean_of_squares")


def fence(code: str) -> str:
    return f"```python\n{code}\n```"


REFERENCE = [fence("def mean_of_squares(xs):\n    squares = [x * x for x in xs]"),
             fence("    total = sum(squares)"), fence("    return total / len(xs)")]


def problem(reference=REFERENCE, tests=TESTS) -> dict:
    return {"problem_id": "c", "question": "Write mean_of_squares(xs).", "answer": "",
            "reference_solution": "\n\n".join(reference),
            "metadata": json.dumps({"outcome": {"verifier": "code", "entry_point": "mean_of_squares",
                                                "tests": tests, "setup": ""}})}


def label(steps, prob=None, failures=None, cfg=ReferenceMatchConfig()):
    rollout = RolloutSteps("c", "r", "q", tuple(steps))
    return list(label_reference_match([rollout], [prob or problem()], cfg, failures))


def verdicts(labels):
    return [(l.evidence["verdict"], l.hard_label) for l in labels]


@pytest.mark.slow
def test_renamed_variables_that_establish_the_same_values_reproduce_the_reference():
    steps = [fence("def mean_of_squares(values):\n    sq = [v ** 2 for v in values]"),
             fence("    s = sum(sq)"), fence("    return s / len(values)")]
    labels = label(steps)
    assert verdicts(labels) == [("reproduces", True)] * 3
    assert [l.evidence["matched_reference_step"] for l in labels] == [0, 1, 2]
    assert labels[1].evidence["effects"] == [["14"], ["9"], ["2"]] and labels[0].calls == 0
    rollout = RolloutSteps("c", "r", "q", tuple(steps))
    table = label_reference_match([rollout], [problem()]).table("run")  # the stored rows, code evidence included
    assert table.num_rows == 3 and json.loads(table.column("evidence")[1].as_py())["tests_passed"] == [True] * 3


@pytest.mark.slow
def test_a_step_whose_values_leave_the_reference_and_whose_outputs_diverge_is_bad():
    steps = [fence("def mean_of_squares(xs):\n    squares = [x * 2 for x in xs]"),
             fence("    total = sum(squares)"), fence("    return total / len(xs)")]
    labels = label(steps)
    assert [good for _, good in verdicts(labels)] == [False, False, False]
    assert labels[0].evidence["tests_passed"] == [False, False, False]


@pytest.mark.slow
def test_another_route_that_passes_every_test_is_not_called_wrong():
    steps = [fence("def mean_of_squares(xs):\n    acc = 0"),
             fence("    for x in xs:\n        acc += x * x"), fence("    return acc / len(xs)")]
    labels = label(steps)
    assert all(good is True for _, good in verdicts(labels))
    assert verdicts(labels)[2] == ("reproduces", True)  # the returned means are the reference's


@pytest.mark.slow
def test_the_step_that_raises_is_bad_and_a_prose_step_abstains():
    steps = ["First square every number.", fence("def mean_of_squares(xs):\n    squares = [x * x for x in xs]"),
             fence("    total = sum(squares) / undefined_name"), fence("    return total")]
    assert verdicts(label(steps))[:3] == [("no_effect", None), ("reproduces", True), ("raises", False)]


@pytest.mark.slow
def test_a_syntax_error_is_blamed_on_the_step_that_holds_it():
    steps = [fence("def mean_of_squares(xs):\n    squares = [x * x for x in xs]"),
             fence("    total = sum(squares"), fence("    return total / len(xs)")]
    assert [v for v, _ in verdicts(label(steps))] == ["no_effect", "raises", "no_effect"]


@pytest.mark.slow
def test_a_solution_that_never_ends_is_stopped_by_the_sandbox_and_abstains():
    steps = [fence("def mean_of_squares(xs):\n    while True:\n        pass")]
    cfg = ReferenceMatchConfig(sandbox=SandboxConfig(cpu_seconds=1, wall_seconds=2.0))
    assert verdicts(label(steps, cfg=cfg)) == [("no_effect", None)]


@pytest.mark.slow
def test_a_reference_that_fails_its_own_tests_labels_nothing_and_says_why():
    failures = FailureLog("run")
    wrong = [fence("def mean_of_squares(xs):\n    return 0")]
    assert label(REFERENCE, prob=problem(reference=wrong), failures=failures) == []
    assert "the reference does not pass its own tests (AssertionError" in failures.rows[0]["reason"]


def test_the_steps_program_keeps_each_steps_lines():
    program = code_of_steps(REFERENCE)
    assert program.lines == ((1, 2), (3,), (4,))
    assert program.code.splitlines()[2] == "    total = sum(squares)"


def test_a_trace_needs_a_code_problem():
    with pytest.raises(ValueError, match="needs a code problem"):
        trace_solution(REFERENCE, OutcomeSpec("math", answer="3"))


# The project's own code_block steps: one fence across the steps (the first opens it, the last closes it).
SPANNING = ["```python\ndef mean_of_squares(xs):", "    squares = [x * x for x in xs]", "    total = sum(squares)",
            "    return total / len(xs)\n```"]


def test_a_fence_that_spans_steps_gives_each_step_its_own_lines():
    program = code_of_steps(["Plan: square, sum, divide.", *SPANNING])
    assert program.lines == ((), (1,), (2,), (3,), (4,))
    assert program.code.splitlines() == ["def mean_of_squares(xs):", "    squares = [x * x for x in xs]",
                                         "    total = sum(squares)", "    return total / len(xs)"]


def test_a_fence_left_open_runs_to_the_end_and_another_languages_block_is_not_code():
    program = code_of_steps(["```text\nnot code\n```", "```python\ndef f(x):", "    return x"])
    assert program.code == "def f(x):\n    return x\n" and program.lines == ((), (1,), (2,))


@pytest.mark.slow
def test_code_block_steps_against_a_one_block_reference_header_included():
    reference = "```python\n" + "\n".join(s.strip("`").removeprefix("python\n") for s in SPANNING) + "\n```"
    wrong = [*SPANNING[:2], "    total = sum(squares) - 1", SPANNING[3]]
    labels = label(wrong, prob=problem(reference=[reference]))
    # the header binds the same arguments as the reference's; the step that leaves its values is the first bad one
    assert verdicts(labels) == [("reproduces", True), ("reproduces", True), ("diverges", False), ("diverges", False)]
    assert [l.evidence["matched_reference_step"] for l in labels[:2]] == [0, 1]
