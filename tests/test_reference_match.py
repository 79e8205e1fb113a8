"""Reference matching: steps labeled against a problem's reference solution, no model call (MatchTIR-style)."""

from __future__ import annotations

import pytest

from prm_data.failures import FailureLog
from prm_data.labelers.protocol import LabelerInputs
from prm_data.labelers.reference_match import (ReferenceMatchConfig, computations, label_reference_match,
                                               match_steps, reference_steps)
from prm_data.labelers.registry import spec
from prm_data.labelers.sim_truth import sim_rollouts
from prm_data.rollouts import RolloutSteps
from prm_data.sources.bank import generate_bank

GSM8K_QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                  "How many clips did Natalia sell altogether in April and May?")
GSM8K_REFERENCE = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                   "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


def label(steps, reference=GSM8K_REFERENCE, question=GSM8K_QUESTION, is_correct=None, cfg=ReferenceMatchConfig()):
    rollout = RolloutSteps("p", "r", question, tuple(steps), answer="72", is_correct=is_correct)
    return list(label_reference_match([rollout], [{"problem_id": "p", "reference_solution": reference}], cfg))


def verdicts(labels) -> list[tuple[str, bool | None]]:
    return [(l.evidence["verdict"], l.hard_label) for l in labels]


def test_a_step_that_reproduces_the_reference_is_good_and_costs_nothing():
    labels = label(["In May she sold 48 / 2 = 24 clips.", "Altogether 48 + 24 = 72 clips. The answer is 72."])
    assert verdicts(labels) == [("reproduces", True), ("reproduces", True)]
    assert [l.evidence["matched_reference_step"] for l in labels] == [0, 1]
    assert all(l.calls == 0 and l.prompt_tokens == 0 and l.completion_tokens == 0 for l in labels)


def test_latex_and_reordered_computations_reproduce_the_reference():
    labels = label([r"In May: $\frac{48}{2} = 24$.", r"Total: $24 + 48 = 72$."])
    assert verdicts(labels) == [("reproduces", True), ("reproduces", True)]


def test_a_wrong_operation_on_the_same_inputs_contradicts_its_matched_reference_step():
    labels = label(["In May she sold 48 * 2 = 96 clips.", "Altogether 48 + 96 = 144."], is_correct=False)
    assert verdicts(labels) == [("contradicts_reference", False), ("carries_error", False)]
    first = labels[0].evidence
    assert first["matched_reference_step"] == 0 and first["reference_step_text"].startswith("Natalia sold 48/2")
    assert first["computations"][0]["value"] == "96"


def test_an_exactly_wrong_computation_is_an_arithmetic_error_at_veto_confidence():
    labels = label(["In May she sold 48 / 2 = 24 clips.", "Altogether 48 + 24 = 70."])
    assert verdicts(labels) == [("reproduces", True), ("arithmetic_error", False)]
    assert labels[1].confidence == 1.0 and labels[0].confidence < 1.0


def test_a_step_without_a_computation_abstains():
    labels = label(["She sold half as many in May, that is 24.", "48 + 24 = 72"])
    assert verdicts(labels) == [("no_computation", None), ("reproduces", True)]
    assert labels[0].value is None and labels[0].evidence["matched_reference_step"] == -1


def test_another_route_to_the_reference_values_is_not_called_wrong():
    steps = ["Three halves of April: 48 * 3 = 144.", "144 / 2 = 72 clips in both months."]
    assert verdicts(label(steps)) == [("alternate_route", True), ("reproduces", True)]
    # the price of the strict setting (a shared operand only): the same route is called a contradiction
    strict = label(steps, cfg=ReferenceMatchConfig(reproduce_from_grounded=False))
    assert verdicts(strict)[0] == ("contradicts_reference", False)


def test_a_value_off_the_reference_with_nothing_shared_diverges_only_when_the_answer_is_wrong():
    steps = ["48 / 2 = 24 in May.", "Then 5 * 7 = 35."]
    assert verdicts(label(steps, is_correct=False))[1] == ("diverges", False)
    assert verdicts(label(steps, is_correct=True))[1] == ("off_reference", None)


def test_a_last_step_that_states_a_wrong_final_answer_is_bad_even_without_a_computation():
    steps = ["In May she sold 48 / 2 = 24 clips.", "So she sold 24 clips in all."]
    assert verdicts(label(steps, is_correct=False)) == [("reproduces", True), ("wrong_final_answer", False)]
    assert verdicts(label(steps, is_correct=None))[1] == ("no_computation", None)  # ungraded: nothing to go on


def test_a_reference_computation_is_never_an_arithmetic_error_of_the_rollout():
    # the bank's `/` is integer division: 14 / 4 = 3 in its reference is the problem's own operation
    reference = "Step 1: so 14 / 4 = 3.\n\nStep 2: so 3 + 5 = 8. The answer is \\boxed{8}."
    labels = label(["Step 1: so 14 / 4 = 3.", "Step 2: so 3 + 5 = 8."], reference=reference, question="")
    assert verdicts(labels) == [("reproduces", True), ("reproduces", True)]


def test_gsm8k_annotations_are_computations_and_the_answer_line_is_no_step():
    steps = reference_steps(GSM8K_REFERENCE)
    assert [s.text[:12] for s in steps] == ["Natalia sold", "Natalia sold"]
    assert [[c.text for c in s.computations] for s in steps] == [["48 / 2 = 24"], ["48 + 24 = 72"]]


def test_a_rounded_value_establishes_the_exact_one():
    [c] = computations("10/3 ≈ 3.33")
    assert c.holds is True and str(c.value) == "10/3"


def test_matching_is_one_to_one_and_optimal():
    reference = reference_steps("2 + 3 = 5\n\n5 * 4 = 20\n\n20 - 1 = 19")
    steps = [computations(t) for t in ("5 * 4 = 20", "2 + 3 = 5", "no math here", "20 - 1 = 19")]
    assert {i: j for i, (j, _) in match_steps(steps, reference, ReferenceMatchConfig()).items()} == \
        {0: 1, 1: 0, 3: 2}


def test_a_problem_without_a_reference_gets_a_failure_row_and_no_labels():
    failures = FailureLog("run")
    rollout = RolloutSteps("p", "r", "q", ("1 + 1 = 2",))
    labels = label_reference_match([rollout], [{"problem_id": "p", "reference_solution": ""}], failures=failures)
    assert len(labels) == 0
    assert [f["reason"] for f in failures.rows] == ["the problem has no reference_solution: its rollouts are not "
                                                    "labeled"]


def test_the_registry_runs_it_with_the_shards_problems_and_no_model():
    entry = spec("reference_match")
    assert entry.needs == frozenset() and entry.role == "tool"
    rollout = RolloutSteps("p", "r", GSM8K_QUESTION, ("48 / 2 = 24", "48 + 24 = 72"))
    out = entry.run(LabelerInputs("run", [rollout], [{"problem_id": "p", "reference_solution": GSM8K_REFERENCE}],
                                  FailureLog("run")), entry.config())
    assert [l.hard_label for l in out.labels] == [True, True]
    assert out.labels.table("run").num_rows == 2


@pytest.mark.parametrize("grounded", [True, False])
def test_on_the_synthetic_policy_the_first_bad_step_is_usually_the_true_first_error(grounded):
    # the simulator's truth is independent of this labeler (prm_data/llm/sim.py); not a constant read back
    sims = sim_rollouts(10, 6, 0.15, seed=5, ops="+-*")
    problems = [p.to_row("t") for p in generate_bank(10, seed=5, difficulty=(3, 5), ops="+-*")]
    labels = label_reference_match([s.as_rollout_steps() for s in sims], problems,
                                   ReferenceMatchConfig(reproduce_from_grounded=grounded))
    by_rollout: dict = {}
    for l in labels:
        by_rollout.setdefault(l.rollout_id, []).append(l)
    hits = 0
    for s in sims:
        bad = [l.step_index for l in by_rollout[s.solution.rollout_id] if l.hard_label is False]
        hits += (bad[0] if bad else -1) == s.true_first_error
    erroneous = sum(s.true_first_error != -1 for s in sims)
    assert erroneous >= 10  # the check means something only if errors are there to find
    assert hits >= 0.9 * len(sims)
