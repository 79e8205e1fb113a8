"""Running the bank's own code in process: results per test, a line budget against endless loops."""

from __future__ import annotations

import time

from prm_data.sources.trusted_exec import evaluate_calls, run_trusted_tests

LOOP = "def f(n):\n    i = 0\n    while i < n:\n        i -= 1\n    return i\n"


def test_each_test_passes_or_fails_with_its_reason():
    code = "def f(xs):\n    return sum(xs)\n"
    assert run_trusted_tests(code, ("assert f([1, 2]) == 3", "assert f([]) == 1", "assert g(1)")) == (
        (True, ""), (False, "AssertionError: "), (False, "NameError: name 'g' is not defined"))


def test_an_endless_loop_stops_at_the_line_budget_and_fails():
    start = time.process_time()
    [(passed, reason)] = run_trusted_tests(LOOP, ("assert f(3) == 3",), max_lines=20_000)
    assert not passed and reason == "ran out of its line budget"
    assert time.process_time() - start < 5


def test_code_that_fails_to_define_fails_every_test():
    results = run_trusted_tests("def f(:\n", ("assert f()", "assert True"))
    assert [ok for ok, _ in results] == [False, False]
    assert all(reason.startswith("definition failed: SyntaxError") for _, reason in results)


def test_calls_are_evaluated_in_order():
    assert evaluate_calls("def f(x):\n    return x * 2\n", ["f(2)", "f('a')"]) == [4, "aa"]
