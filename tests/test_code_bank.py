"""The code bank: seeded function-writing problems whose references pass their own unit tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prm_data.sources import SourceError, load_problems, parse_code_bank_spec
from prm_data.sources.code_bank import difficulty_range, generate_code_bank, parse_code_question
from prm_data.steps import split_steps
from prm_data.verifiers.protocol import OutcomeSpec

# Runs each problem's reference, then each test, in a fresh Python: a plain exec, nothing of ours imported.
RUNNER = r"""
import json, sys
report = []
for p in json.load(sys.stdin):
    failed = []
    for test in p["tests"]:
        scope = {}
        try:
            exec(p["setup"] + "\n" + p["code"], scope)
            exec(test, scope)
        except Exception as exc:
            failed.append(f"{test}: {type(exc).__name__}")
    report.append({"id": p["id"], "failed": failed, "defined": p["entry_point"] in scope})
print(json.dumps(report))
"""


def run_in_subprocess(items: list[dict]) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(items), capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_every_reference_passes_its_own_tests_in_a_fresh_python():
    least, most = difficulty_range()
    rows = load_problems(f"code_bank:120:{least}-{most}:3", run_id="t")
    items = []
    for row in rows:
        spec = OutcomeSpec.from_problem(row)
        items.append({"id": row["problem_id"], "code": row["answer"], "tests": list(spec.tests),
                      "setup": spec.setup, "entry_point": spec.entry_point})
    report = run_in_subprocess(items)
    assert [r for r in report if r["failed"] or not r["defined"]] == []
    assert all(4 <= len(i["tests"]) <= 8 for i in items)


def test_tests_start_with_the_empty_input_a_single_element_and_negatives():
    for p in generate_code_bank(40, seed=5, difficulty=(2, 5)):
        empty = {"list": "[]", "str": "''", "int": "0"}[p.family_spec.kind]
        assert p.tests[0].startswith(f"assert {p.name}({empty}) == ")
        if p.family_spec.kind == "list":
            assert p.tests[1].startswith(f"assert {p.name}([") and "," not in p.tests[1].split("==")[0]
        if p.family_spec.kind != "str":
            assert "-" in p.tests[2].split("==")[0]


def test_the_same_seed_gives_the_same_bank_and_another_seed_another():
    a = [p.question for p in generate_code_bank(30, seed=11, difficulty=(2, 6))]
    assert a == [p.question for p in generate_code_bank(30, seed=11, difficulty=(2, 6))]
    assert a != [p.question for p in generate_code_bank(30, seed=12, difficulty=(2, 6))]


def test_questions_are_unique_and_vary_in_wording_and_constants():
    bank = generate_code_bank(200, seed=0, difficulty=(2, 7))
    questions = [p.question for p in bank]
    assert len(set(questions)) == len(questions)
    assert len({q.split("`")[0] for q in questions}) == 3  # every intro wording is used
    assert len({p.family for p in bank}) == 6
    assert len({p.name for p in bank}) > 20


@pytest.mark.parametrize("blocks", [2, 3, 5, 7])
def test_difficulty_is_the_number_of_body_blocks_one_step_each(blocks):
    for p in generate_code_bank(15, seed=2, difficulty=blocks):
        assert p.difficulty == blocks
        steps = split_steps(p.reference_solution, "code_block")
        assert steps == list(p.reference_steps)
        assert len(steps) == blocks + 1  # the fenced header, then one step per block


def test_a_question_parses_back_to_its_problem_and_other_text_does_not():
    for p in generate_code_bank(80, seed=9, difficulty=(2, 7)):
        assert parse_code_question(p.question) == p
    q = generate_code_bank(1, seed=9, difficulty=4)[0].question
    assert parse_code_question(q.replace("`", "'")) is None
    assert parse_code_question("Mia has 3 apples. Then Mia gets 2 more apples. How many?") is None
    assert parse_code_question(q[:-1] + " Also return the median.") is None


def test_rows_follow_the_code_problem_convention():
    row = load_problems("code_bank:1:4:1", run_id="run-1")[0]
    spec = OutcomeSpec.from_problem(row)
    assert row["source"] == "code_bank" and row["difficulty"] == 4 and row["run_id"] == "run-1"
    assert spec.verifier == "code" and row["answer"].startswith(f"def {spec.entry_point}(")
    assert f"`{spec.entry_point}(" in row["question"]
    assert row["reference_solution"].startswith("```python\n") and row["reference_solution"].endswith("```")


@pytest.mark.parametrize("spec,message", [("code_bank:0", "bad code bank spec"), ("code_bank:5:x", "bad code bank"),
                                          ("code_bank:5:1", "difficulty"), ("code_bank:5:3-99", "difficulty"),
                                          ("code_bank:5:6-4", "difficulty")])
def test_bad_specs_are_refused_with_the_reason(spec, message):
    with pytest.raises(SourceError, match=message):
        load_problems(spec, run_id="t")


def test_spec_defaults():
    assert parse_code_bank_spec("12") == parse_code_bank_spec("12:3:0")
    assert parse_code_bank_spec("12:2-5:7").difficulty == (2, 5)
