"""HumanEval- and MBPP-style records through the sources layer: good rows load as code problems whose
references pass their tests, each bad row becomes a failure with its reason and loses nothing else."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm_data.failures import FailureLog
from prm_data.schema import PROBLEMS
from prm_data.sources import FieldMapping, load_problems
from prm_data.steps import split_steps
from prm_data.verifiers.protocol import OutcomeSpec

FIXTURES = Path(__file__).parent / "fixtures" / "code"
HUMANEVAL = FIXTURES / "humaneval_style.jsonl"
MBPP = FIXTURES / "mbpp_style.jsonl"

# setup, then the solution, then one test, in a fresh Python: plain exec, nothing of ours imported
RUNNER = r"""
import json, sys
out = []
for item in json.load(sys.stdin):
    passed = []
    for test in item["tests"]:
        scope = {}
        try:
            exec(item["setup"], scope)
            exec(item["code"], scope)
            exec(test, scope)
            passed.append(True)
        except Exception:
            passed.append(False)
    out.append(passed)
print(json.dumps(out))
"""


def run_tests(items: list[dict]) -> list[list[bool]]:
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(items), capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def load(path, **mapping) -> tuple[list[dict], list[dict]]:
    failures = FailureLog("t")
    rows = load_problems(str(path), FieldMapping(**mapping), run_id="t", failures=failures)
    return rows, failures.rows


def specs(rows) -> dict[str, OutcomeSpec]:
    return {r["problem_id"]: OutcomeSpec.from_problem(r) for r in rows}


def test_humaneval_style_good_rows_load_and_each_bad_row_is_a_failure_with_its_reason():
    rows, failures = load(HUMANEVAL)
    assert [r["problem_id"] for r in rows] == ["Toy/0", "Toy/1", "Toy/2"]
    assert [(f["item_id"].rsplit("#", 1)[1], f["reason"]) for f in failures] == [
        ("line 4", "missing humaneval key 'test'"),
        ("line 5", "test does not parse: invalid syntax (line 3)"),
        ("line 6", "entry point 'count_vowels' is not defined by prompt + canonical_solution"),
    ]
    assert all(f["stage"] == "source" and f["input"] for f in failures)
    pa.Table.from_pylist(rows, schema=PROBLEMS)  # the rows fit the problems table


def test_a_check_of_asserts_is_split_into_one_test_per_assert_with_the_entry_point():
    spec = specs(load(HUMANEVAL)[0])["Toy/0"]
    assert spec.verifier == "code" and spec.entry_point == "below_zero_count"
    assert spec.tests == ("assert below_zero_count([]) == 0", "assert below_zero_count([1, -3, 1]) == 2",
                          "assert below_zero_count([-1, -1, 5]) == 2", "assert below_zero_count([4, 5]) == 0")
    assert spec.setup.startswith("METADATA = {")


def test_a_check_with_more_than_asserts_is_kept_whole_and_called_on_the_entry_point():
    spec = specs(load(HUMANEVAL)[0])["Toy/1"]
    assert len(spec.tests) == 1
    assert spec.tests[0].startswith("def check(candidate):") and spec.tests[0].endswith("check(rotate_left)")


def test_module_level_imports_of_the_test_go_to_setup():
    assert specs(load(HUMANEVAL)[0])["Toy/2"].setup == "import math"


def test_mbpp_style_rows_take_setup_code_and_find_the_entry_point_the_tests_call():
    rows, failures = load(MBPP)
    by_id = specs(rows)
    assert list(by_id) == ["mbpp/901", "mbpp/902", "mbpp/903"]
    assert by_id["mbpp/902"].setup == "STOP = {'a', 'the', 'of'}"
    assert by_id["mbpp/903"].entry_point == "digit_product"  # not the helper defined before it
    assert [f["reason"] for f in failures] == [
        "test 2 of test_list does not parse: invalid syntax (line 1)",
        "missing mbpp key 'code'",
        "the tests call none of the functions the code defines (negate): no entry point",
    ]
    assert "`def second_largest(nums)`" in rows[0]["question"]


@pytest.mark.parametrize("path", [HUMANEVAL, MBPP])
def test_every_loaded_reference_passes_its_tests_and_a_wrong_one_does_not(path):
    rows, _ = load(path)
    items = []
    for r in rows:
        spec = OutcomeSpec.from_problem(r)
        items.append({"code": r["answer"], "tests": list(spec.tests), "setup": spec.setup})
        wrong = r["answer"] + f"\n\ndef {spec.entry_point}(*args):\n    return 'wrong'\n"
        items.append({"code": wrong, "tests": list(spec.tests), "setup": spec.setup})
    results = run_tests(items)
    assert all(all(r) for r in results[0::2])
    assert not any(any(r) for r in results[1::2])


def test_references_are_code_block_steps_and_difficulty_counts_body_statements():
    rows = {r["problem_id"]: r for r in load(HUMANEVAL)[0] + load(MBPP)[0]}
    steps = split_steps(rows["Toy/0"]["reference_solution"], "code_block")
    assert steps[-1] == "    return negative\n```" and steps[0].startswith("```python\nfrom typing import List")
    assert rows["Toy/0"]["difficulty"] == 4 and rows["Toy/1"]["difficulty"] == 3  # the docstring is not a statement
    assert rows["mbpp/901"]["answer"] == ("def second_largest(nums):\n    values = sorted(set(nums))\n"
                                          "    return values[-2] if len(values) > 1 else None")  # \r\n normalized


def test_a_named_format_is_applied_to_every_row():
    rows, failures = load(HUMANEVAL, format="mbpp")
    assert rows == [] and {f["reason"] for f in failures} == {"missing mbpp key 'text'"}


def test_mbpp_from_csv_with_test_list_as_a_json_cell_and_from_parquet_with_a_list_column(tmp_path):
    records = [json.loads(line) for line in MBPP.read_text().splitlines()][:3]
    with (tmp_path / "mbpp.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["task_id", "text", "code", "test_list", "test_setup_code"])
        writer.writeheader()
        for r in records:
            writer.writerow({k: json.dumps(r[k]) if k == "test_list" else r[k] for k in writer.fieldnames})
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in ("task_id", "text", "code", "test_list")}
                                         for r in records]), tmp_path / "mbpp.parquet")
    from_csv, csv_failures = load(tmp_path / "mbpp.csv")
    from_parquet, parquet_failures = load(tmp_path / "mbpp.parquet")
    assert csv_failures == [] and parquet_failures == []
    assert specs(from_csv)["mbpp/902"].tests == specs(from_parquet)["mbpp/902"].tests == tuple(records[1]["test_list"])


def test_a_test_list_that_is_not_a_list_is_a_failure(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "t", "code": "def f():\n    return 1", "test_list": "assert f() == 1"}) + "\n")
    rows, failures = load(path)
    assert rows == [] and failures[0]["reason"] == "mbpp key 'test_list' is text but not a JSON list of asserts"


def test_math_records_still_load_as_math_problems(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5"}) + "\n")
    rows, failures = load(path)
    assert failures == [] and rows[0]["answer"] == "5" and OutcomeSpec.from_problem(rows[0]).verifier == "math"


def test_problems_add_loads_code_records_and_reports_the_bad_ones(tmp_path):
    from typer.testing import CliRunner

    from prm_data.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["--warehouse", str(tmp_path / "wh"), "problems", "add", str(MBPP), "--format", "mbpp"])
    assert result.exit_code == 0, result.output
    assert "added 3 problems" in result.output and "3 skipped as malformed" in result.output
    refused = runner.invoke(app, ["--warehouse", str(tmp_path / "wh"), "problems", "add", str(MBPP), "--format", "x"])
    assert refused.exit_code == 2
