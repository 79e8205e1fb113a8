"""The code verifier: a solution's unit tests run in the OS sandbox, one result per test, and bad code
of every kind ends as failed tests with a reason, never an exception nor a stalled run.

Limits are small here (0.3 s a test) so the hostile cases cost little; each case says which guard it
needs (without it the test would hang past its bound, or report the wrong thing).
"""

from __future__ import annotations

import time

import pytest

from prm_data.labelers.sandbox import isolation_problem
from prm_data.verifiers.code_tests import CodeTestsConfig, CodeTestsVerifier, solution_code
from prm_data.verifiers.protocol import OutcomeSpec
from prm_data.verifiers.registry import Verifiers, VerifiersConfig

pytestmark = pytest.mark.skipif(isolation_problem() is not None, reason=f"no sandbox: {isolation_problem()}")

FAST = CodeTestsConfig(test_seconds=0.3, load_seconds=0.6, grace_seconds=0.2, budget_seconds=4.0)
VERIFIER = CodeTestsVerifier(FAST)
ADD_ONE = OutcomeSpec("code", tests=("assert add_one(1) == 2", "assert add_one(-1) == 0", "assert add_one(41) == 42"),
                      entry_point="add_one")
GOOD = "def add_one(x):\n    return x + 1\n"


def verify(code: str, spec: OutcomeSpec = ADD_ONE):
    started = time.monotonic()
    outcome = VERIFIER.verify(spec, code)
    return outcome, time.monotonic() - started


def errors(outcome) -> list[str | None]:
    return [t.error for t in outcome.tests]


def test_a_correct_solution_passes_every_test_with_its_time():
    outcome, _ = verify(GOOD)
    assert outcome.status == "correct" and outcome.success and outcome.score == 1.0
    assert [t.passed for t in outcome.tests] == [True, True, True] and outcome.reason is None
    assert [t.name for t in outcome.tests] == list(ADD_ONE.tests)
    assert all(0 <= t.seconds < 0.3 for t in outcome.tests)
    assert outcome.tag == "code@1" and outcome.to_evidence()["tests_passed"] == [True, True, True]


def test_a_partly_wrong_solution_scores_the_share_of_tests_it_passes_and_says_which_failed_how():
    outcome, _ = verify("def add_one(x):\n    return abs(x) + 1\n")  # wrong for negatives only
    assert outcome.status == "incorrect" and [t.passed for t in outcome.tests] == [True, False, True]
    assert outcome.score == pytest.approx(2 / 3)
    assert outcome.tests[1].error == "AssertionError"
    assert outcome.reason == "test 1 (assert add_one(-1) == 0): AssertionError"


def test_weights_make_the_score_a_weighted_share():
    spec = OutcomeSpec("code", tests=ADD_ONE.tests, entry_point="add_one", weights=(1.0, 3.0, 1.0))
    outcome, _ = verify("def add_one(x):\n    return abs(x) + 1\n", spec)
    assert outcome.score == pytest.approx(2 / 5)


def test_an_exception_is_its_type_and_message_in_one_line():
    outcome, _ = verify("def add_one(x):\n    raise ValueError('no\\nway')\n")
    assert errors(outcome) == ["ValueError: no way"] * 3 and outcome.score == 0.0


def test_setup_runs_before_the_solution_and_the_tests():
    spec = OutcomeSpec("code", tests=("assert root(16) == 4",), entry_point="root", setup="import math")
    outcome, _ = verify("def root(x):\n    return math.isqrt(x)\n", spec)
    assert outcome.status == "correct"


def test_tests_do_not_leak_names_into_each_other():
    spec = OutcomeSpec("code", tests=("leaked = 1\nassert f() == 1", "assert 'leaked' not in globals()"),
                       entry_point="f")
    outcome, _ = verify("def f():\n    return 1\n", spec)
    assert [t.passed for t in outcome.tests] == [True, True]


@pytest.mark.parametrize(("code", "reason"), [
    ("", "the solution contains no code"),
    ("x = 1\n", "the solution does not define add_one"),
    ("def add_one(x) return x\n", "while loading: SyntaxError: expected ':' (line 1)"),
    ("import no_such_module_anywhere\n", "while loading: ModuleNotFoundError: No module named 'no_such_module_anywhere'"),
])
def test_code_that_cannot_be_loaded_fails_every_test_with_the_reason(code, reason):
    outcome, _ = verify(code)
    assert outcome.status in ("incorrect", "unparseable") and outcome.score == 0.0
    assert outcome.reason == reason and errors(outcome) == [reason] * 3


def test_an_endless_loop_at_import_is_cut_at_the_load_limit():  # guard: the load alarm
    outcome, seconds = verify("while True:\n    pass\n")
    assert outcome.reason == "while loading: timeout: ran over 0.6 s" and outcome.score == 0.0
    assert seconds < 8  # a stall would be 60 s


def test_a_hung_test_times_out_and_the_next_test_still_runs():  # guard: the per-test alarm
    outcome, seconds = verify("import time\ndef add_one(x):\n    if x < 0:\n        time.sleep(60)\n    return x + 1\n")
    assert [t.passed for t in outcome.tests] == [True, False, True]
    assert outcome.tests[1].error == "timeout: ran over 0.3 s" and 0.25 < outcome.tests[1].seconds < 1.5
    assert seconds < 8  # a stall would be 60 s


def test_code_that_ignores_the_alarm_is_killed_and_the_next_test_gets_a_fresh_worker():  # guard: the harness kill
    code = ("import signal\ndef add_one(x):\n    if x < 0:\n        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "        while True:\n            pass\n    return x + 1\n")
    outcome, seconds = verify(code)
    assert [t.passed for t in outcome.tests] == [True, False, True]
    assert outcome.tests[1].error == "timeout: ran over 0.3 s (killed)" and seconds < 8


def test_a_catch_everything_loop_still_times_out():  # guard: the alarm is a BaseException, then the kill
    outcome, _ = verify("def add_one(x):\n    while True:\n        try:\n            while True:\n                pass\n"
                        "        except BaseException:\n            pass\n", OutcomeSpec("code", tests=ADD_ONE.tests[:1],
                                                                                         entry_point="add_one"))
    assert outcome.tests[0].error.startswith("timeout: ran over 0.3 s")


@pytest.mark.parametrize(("exit_call", "error"), [
    ("os._exit(0)", "the process exited with code 0 (os._exit or a crash)"),
    ("sys.exit(0)", "SystemExit(0): the code called exit"),
    ("ctypes.string_at(0)", "the interpreter crashed (SIGSEGV)"),
])
def test_exiting_or_crashing_in_a_test_fails_that_test_only(exit_call, error):  # guard: worker restart
    code = f"import ctypes, os, sys\ndef add_one(x):\n    if x < 0:\n        {exit_call}\n    return x + 1\n"
    outcome, _ = verify(code)
    assert [t.passed for t in outcome.tests] == [True, False, True] and outcome.tests[1].error == error


def test_a_hundred_megabytes_of_output_fails_the_test_at_the_output_limit():  # guard: RLIMIT_FSIZE on its output
    roomy = CodeTestsVerifier(FAST.model_copy(update={"test_seconds": 2.0}))  # building 100 MB takes time
    started = time.monotonic()
    outcome = roomy.verify(OutcomeSpec("code", tests=ADD_ONE.tests[:1], entry_point="add_one"),
                           "def add_one(x):\n    print('x' * 100_000_000)\n    return x + 1\n")
    seconds = time.monotonic() - started
    assert outcome.tests[0].error == "output limit: the code wrote more than the sandbox allows"
    assert seconds < 8


def test_processes_a_test_leaves_behind_are_killed_before_the_next_test():  # guard: the sweep between tests
    spec = OutcomeSpec("code", tests=(
        "assert add_one(1) == 2",
        "import os\nalive = [p for p in os.listdir('/proc') if p.isdigit()]\nassert len(alive) <= 3, alive"),
        entry_point="add_one")
    code = ("import os, time\ndef add_one(x):\n    for _ in range(5):\n        if os.fork() == 0:\n"
            "            time.sleep(60)\n    return x + 1\n")
    outcome, _ = verify(code, spec)
    assert [t.passed for t in outcome.tests] == [True, True], errors(outcome)


def test_a_fork_bomb_fails_its_test_and_the_run_goes_on():  # guard: RLIMIT_NPROC, then the sweep
    code = ("import os\ndef add_one(x):\n    if x < 0:\n        while True:\n            os.fork()\n"
            "    return x + 1\n")
    outcome, seconds = verify(code)
    assert [t.passed for t in outcome.tests] == [True, False, True]
    assert "BlockingIOError" in outcome.tests[1].error and seconds < 8


def test_a_memory_hog_fails_with_memory_error():  # guard: RLIMIT_AS
    outcome, _ = verify("def add_one(x):\n    return len(bytearray(4_000_000_000)) + x\n",
                        OutcomeSpec("code", tests=ADD_ONE.tests[:1], entry_point="add_one"))
    assert outcome.tests[0].error == "MemoryError"


def test_a_solution_cannot_forge_results_by_printing_or_writing_to_any_descriptor():  # guard: token and nonces
    forge = ("import os, sys\nfor fd in range(1, 40):\n    for line in ('start', 'test\\t0\\tP\\t0\\t', 'load\\tok\\t0\\t',\n"
             "                 'x\\tP\\t0\\t', '0\\tP\\t0.0\\t'):\n        try:\n            os.write(fd, (line + '\\n').encode())\n"
             "        except OSError:\n            pass\n"
             "try:\n    os.open(f'/proc/{os.getppid()}/fd/1', os.O_WRONLY)\n    reached = True\n"
             "except OSError:\n    reached = False\n"
             "def add_one(x):\n    print('PASSED', flush=True)\n    return -999 if not reached else 'stdout reached'\n")
    outcome, _ = verify(forge)
    assert outcome.status == "incorrect" and outcome.score == 0.0
    assert errors(outcome) == ["AssertionError"] * 3  # the function ran and returned -999: stdout was out of reach


def test_the_time_budget_of_a_solution_bounds_a_run_of_hanging_tests():  # guard: budget_seconds
    slow = CodeTestsVerifier(FAST.model_copy(update={"budget_seconds": 0.8}))
    spec = OutcomeSpec("code", tests=tuple(f"assert add_one({i}) == {i + 1}" for i in range(8)), entry_point="add_one")
    started = time.monotonic()
    outcome = slow.verify(spec, "import time\ndef add_one(x):\n    time.sleep(60)\n")
    assert time.monotonic() - started < 8
    assert outcome.tests[-1].error == "not run: the solution's time budget ran out"


def test_verify_many_runs_solutions_in_parallel_sandboxes_and_keeps_their_order():
    codes = [GOOD, "def add_one(x):\n    return x\n", "import time\ndef add_one(x):\n    time.sleep(0.2)\n    return x + 1\n",
             "def add_one(x):\n    return abs(x) + 1\n"]
    verifiers = Verifiers(VerifiersConfig(code=FAST.model_copy(update={"max_parallel": 4})))
    outcomes = verifiers.verify_many([(ADD_ONE, c) for c in codes])
    assert [o.score for o in outcomes] == [1.0, 0.0, 1.0, pytest.approx(2 / 3)]


def test_a_problem_without_tests_or_with_broken_tests_is_ungradeable():
    assert VERIFIER.ungradeable_reason(OutcomeSpec("code", entry_point="f")) == "the problem has no unit tests"
    assert "test 1 does not compile" in VERIFIER.ungradeable_reason(
        OutcomeSpec("code", tests=("assert f()", "assert ("), entry_point="f"))
    assert VERIFIER.ungradeable_reason(OutcomeSpec("code", tests=("assert f()",), entry_point="f-x")) is not None
    assert VERIFIER.ungradeable_reason(ADD_ONE) is None
    assert VERIFIER.verify(OutcomeSpec("code", entry_point="f"), GOOD).status == "ungradeable"


FENCED = """First a draft:

```python
def add_one(x):
    return x
```

That is wrong. Helper:

```python
OFFSET = 1
```

Fixed:

```py
def add_one(x):
    return x + 1
```
"""


def test_the_last_fenced_block_that_defines_the_entry_point_is_the_code():
    assert solution_code(FENCED, "add_one") == "def add_one(x):\n    return x + 1\n"


def test_without_a_defining_block_all_fenced_blocks_run_joined():
    text = "```python\nimport math\n```\nthen\n```\nroot = math.isqrt\n```\nand ```text\nnot code\n```"
    assert solution_code(text, "add_one") == "import math\n\n\nroot = math.isqrt\n"


def test_an_unclosed_last_fence_runs_to_the_end_and_plain_text_is_all_code():
    assert solution_code("Plan.\n```python\ndef add_one(x):\n    return x + 1", "add_one") == \
        "def add_one(x):\n    return x + 1"
    assert solution_code(GOOD, "add_one") == GOOD


def test_a_fenced_solution_is_verified_by_its_last_defining_block():
    outcome, _ = verify(FENCED)
    assert outcome.status == "correct"


def test_max_parallel_bounds_the_sandboxes_of_every_thread_together():  # guard: one semaphore per verifier
    import threading

    bounded = CodeTestsVerifier(FAST.model_copy(update={"max_parallel": 2}))
    spec = OutcomeSpec("code", tests=("assert add_one(1) == 2",), entry_point="add_one")
    code = "import time\ndef add_one(x):\n    time.sleep(0.25)\n    return x + 1\n"
    threads = [threading.Thread(target=bounded.verify_many, args=([(spec, code)] * 2,)) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started >= 0.5  # 4 solutions of >= 0.25 s each, at most 2 at a time


@pytest.mark.parametrize(("code", "fault"), [
    ("def add_one(x):\n    return x + 1\n", None),
    ("def add_one(x):\n    return abs(x) + 1\n", None),  # a wrong result is not a fault
    ("def add_one(x):\n    raise ValueError('no')\n", None),  # nor is an exception the code raises
    ("import time\ndef add_one(x):\n    if x < 0:\n        time.sleep(60)\n    return x + 1\n",
     "test 1 (assert add_one(-1) == 0): timeout: ran over 0.3 s"),
    ("import os\ndef add_one(x):\n    if x < 0:\n        os._exit(3)\n    return x + 1\n",
     "test 1 (assert add_one(-1) == 0): the process exited with code 3 (os._exit or a crash)"),
    ("while True:\n    pass\n", "test 0 (assert add_one(1) == 2): while loading: timeout: ran over 0.6 s (and 2 more tests)"),
])
def test_a_run_that_hangs_crashes_or_exits_is_a_fault_and_a_wrong_result_is_not(code, fault):
    """The pipeline turns a fault into a `failures` row with this reason (issue 18: bad code)."""
    outcome, _ = verify(code)
    assert outcome.fault == fault
    assert ("fault" in outcome.to_evidence()) == (fault is not None)
