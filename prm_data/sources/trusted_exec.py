"""Run code this package wrote itself (the code bank's references, the code simulator's buggy
variants of them) in-process, with a bound on the work it may do.

This is *not* a sandbox and must never run model output: model-written code goes
through the verifiers' sandbox (prm_data/labelers/sandbox.py). Code here is built
from the bank's templates, so it cannot touch files or the network; what it can
do wrong is loop forever or raise (a mutated bound, `i -= 1` in a `while`), so
every run counts the lines it executes (`sys.settrace`, per thread) and stops at
`max_lines`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import lru_cache

MAX_LINES = 200_000  # lines one test may execute; the bank's references need a few hundred


class _Budget(Exception):
    """Raised inside the traced code when it ran out of lines (it never reaches the caller)."""


def _run(code: str, setup: str, snippets: Sequence[str], max_lines: int) -> tuple[tuple[bool, str], ...]:
    """Execute `setup` + `code`, then each snippet in a copy of that namespace: (passed, error) each."""
    out = []
    namespace: dict = {"__name__": "__trusted__"}
    try:
        _traced(lambda: exec(compile(setup + "\n" + code, "<trusted>", "exec"), namespace), max_lines)
    except BaseException as exc:  # noqa: BLE001 - any failure of the code is a result, not a crash
        return tuple((False, f"definition failed: {_name(exc)}") for _ in snippets)
    for snippet in snippets:
        scope = dict(namespace)
        try:
            _traced(lambda: exec(compile(snippet, "<test>", "exec"), scope), max_lines)
            out.append((True, ""))
        except BaseException as exc:  # noqa: BLE001
            out.append((False, _name(exc)))
    return tuple(out)


def _name(exc: BaseException) -> str:
    return "ran out of its line budget" if isinstance(exc, _Budget) else f"{type(exc).__name__}: {exc}"[:200]


def _traced(fn, max_lines: int) -> None:
    left = [max_lines]

    def tracer(frame, event, arg):
        if frame.f_code.co_filename in ("<trusted>", "<test>"):
            if event == "line":
                left[0] -= 1
                if left[0] < 0:
                    raise _Budget()
            return tracer
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(previous)


@lru_cache(maxsize=65536)
def run_trusted_tests(code: str, tests: tuple[str, ...], setup: str = "",
                      max_lines: int = MAX_LINES) -> tuple[tuple[bool, str], ...]:
    """(passed, error) of each test snippet run after `setup` + `code` (cached: the same code, the same result)."""
    return _run(code, setup, tests, max_lines)


def passes_all(code: str, tests: Sequence[str], setup: str = "") -> bool:
    return all(ok for ok, _ in run_trusted_tests(code, tuple(tests), setup))


def evaluate_calls(code: str, calls: Sequence[str], max_lines: int = MAX_LINES) -> list:
    """The value of each call expression (e.g. `f([1, 2])`) after running `code`; raises if one fails."""
    namespace: dict = {"__name__": "__trusted__"}
    _traced(lambda: exec(compile(code, "<trusted>", "exec"), namespace), max_lines)
    values = []
    for call in calls:
        box = []
        _traced(lambda: box.append(eval(compile(call, "<test>", "eval"), dict(namespace))), max_lines)
        values.append(box[0])
    return values
