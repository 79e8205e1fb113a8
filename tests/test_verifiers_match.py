"""Exact-match and multiple-choice verifiers, the registry, and where a run configures verifiers."""

from __future__ import annotations

import json

import pytest

from prm_data.config import RunConfig
from prm_data.verifiers.protocol import OutcomeSpec
from prm_data.verifiers.registry import VERIFIERS, Verifiers, VerifiersConfig, ungradeable_reason, verify, verify_many

CAPITAL = OutcomeSpec("exact", "Paris")
OPTIONS = OutcomeSpec("choice", "(B)", choices=("41", "42", "43"))


@pytest.mark.parametrize(("text", "status", "answer"), [
    ("The capital of France.\n\nAnswer: **Paris**.", "correct", "Paris."),
    ("So the final answer is  paris !", "correct", "paris !"),
    ("\\boxed{ PARIS }", "correct", "PARIS"),
    ("I considered Paris.\n\nLyon", "incorrect", "Lyon"),
    ("The answer is Paris, France", "incorrect", "Paris, France"),
    ("   \n", "unparseable", None),
])
def test_exact_match_compares_normalized_final_answers(text, status, answer):
    outcome = verify(CAPITAL, text)
    assert (outcome.status, outcome.answer) == (status, answer)
    assert outcome.score == (1.0 if status == "correct" else 0.0) and outcome.tag == "exact@1"


def test_exact_match_keeps_inner_punctuation():
    assert verify(OutcomeSpec("exact", "U.S."), "Answer: u.s.").success
    assert not verify(OutcomeSpec("exact", "3-4"), "Answer: 34").success


@pytest.mark.parametrize(("text", "picked"), [
    ("Option B is the only even one. The answer is (B).", "B"),
    ("\\boxed{C}", "C"),
    ("Counting gives 42.\n\nAnswer: 42", "B"),  # the option named by its text
    ("B) 42", "B"),
    ("Final answer: a", "A"),
    ("I think A cat sat here", None),  # a word starting with a letter is no pick
    ("(B) 41", None),  # a letter contradicted by its option's text picks nothing
])
def test_multiple_choice_reads_the_picked_option_by_letter_or_text(text, picked):
    outcome = verify(OPTIONS, text)
    assert outcome.answer == picked
    assert outcome.status == ("unparseable" if picked is None else "correct" if picked == "B" else "incorrect")


def test_multiple_choice_refuses_golds_that_are_not_an_option_letter():
    assert ungradeable_reason(OutcomeSpec("choice", "F")) == "gold answer 'F' is not one of the letters ABCDE"
    assert ungradeable_reason(OutcomeSpec("choice", "D", choices=("x", "y", "z"))) is not None
    assert ungradeable_reason(OutcomeSpec("choice", "A", choices=("x", "X"))) == "two options have the same text"
    assert ungradeable_reason(OutcomeSpec("choice", "e")) is None


def test_every_verifier_is_registered_and_an_unknown_one_is_ungradeable_with_the_known_names():
    assert sorted(VERIFIERS) == ["choice", "code", "exact", "math"]
    assert ungradeable_reason(OutcomeSpec("lean")) == "unknown outcome verifier 'lean'; known: " \
                                                      "['choice', 'code', 'exact', 'math']"
    with pytest.raises(KeyError, match="unknown outcome verifier 'lean'"):
        verify(OutcomeSpec("lean"), "x")


def test_verify_many_mixes_verifiers_and_keeps_input_order():
    items = [(CAPITAL, "Answer: Paris"), (OutcomeSpec("math", "21"), "so \\boxed{21}"), (OPTIONS, "(C)"),
             (OutcomeSpec("math", "21"), "\\boxed{20}")]
    assert [(o.verifier, o.success) for o in verify_many(items)] == [
        ("exact", True), ("math", True), ("choice", False), ("math", False)]


def test_a_problems_row_names_its_verifier_in_metadata_and_defaults_to_math():
    code = {"verifier": "code", "entry_point": "f", "tests": ["assert f(1) == 2"], "setup": "import math"}
    row = {"answer": "def f(x):\n    return x + 1", "metadata": json.dumps({"where": "x", "outcome": code})}
    spec = OutcomeSpec.from_problem(row)
    assert (spec.verifier, spec.tests, spec.entry_point, spec.setup) == ("code", ("assert f(1) == 2",), "f", "import math")
    assert OutcomeSpec.from_problem({"answer": 21, "metadata": "{}"}) == OutcomeSpec("math", "21")
    with pytest.raises(ValueError, match="unknown outcome spec keys"):
        OutcomeSpec.from_problem({"answer": "1", "metadata": {"outcome": {"verifier": "code", "test": []}}})


def test_the_run_config_sets_the_code_limits_and_only_a_changed_setting_moves_the_labeling_version():
    default = RunConfig()
    tighter = RunConfig.model_validate({"verifiers": {"code": {"test_seconds": 0.5, "max_parallel": 2}}})
    wider = RunConfig.model_validate({"verifiers": {"code": {"max_parallel": 8}}})
    assert Verifiers(tighter.verifiers).verifier("code").config.test_seconds == 0.5
    assert tighter.labeling_version() != default.labeling_version()
    assert wider.labeling_version() == default.labeling_version()  # parallelism never changes an outcome
    assert RunConfig.model_validate(json.loads(tighter.model_dump_json())) == tighter
    with pytest.raises(ValueError, match="test_secs"):
        RunConfig.model_validate({"verifiers": {"code": {"test_secs": 1}}})
    assert VerifiersConfig().code.max_parallel is None
