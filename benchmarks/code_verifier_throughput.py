"""Code-verifier throughput: unit tests executed and solutions verified per second, limits enforced.

The load is what Monte Carlo labeling of code problems asks of the sandbox: many
completed solutions, each checked against its problem's unit tests by
`prm_data.verifiers.code_tests.CodeTestsVerifier` (one bubblewrap sandbox per
solution, its tests one by one in a forked worker, each under `test_seconds`).
Four small problems in the style of HumanEval/MBPP (6 to 8 tests each), and per
problem five solutions: correct, a wrong one that fails some tests, one that
raises on some inputs, a slow-but-correct one (a few ms of work per test), and
one that hangs on one input (an endless loop: that test is cut at
`test_seconds`, then the harness kills the worker and reloads it for the next).
Two mixes are measured: `no_hang` (the first four kinds) and `with_hang` (all
five, so one solution in five costs a time limit), with 1, 2 and 4 solutions
verified at once (`max_parallel`).

Reported per cell: solutions/s, tests executed/s (every test of the spec counts,
including the one cut by its limit), median wall time per solution, and the CPU
seconds per solution (user + system: this process, bubblewrap, and what each run
reports it spent inside the sandbox, interpreter start-up included). The
limits are the verifier's defaults except `test_seconds` (0.5 s here; 1 s by
default), stated in the JSON. The startup cost of one sandbox (a sandboxed
`pass`) is measured beside it for comparison.

Run: `python benchmarks/code_verifier_throughput.py [--quick]`; prints a table and
writes benchmarks/results/code_verifier_throughput.json, with the load average
at the start (the machine is shared; figures move with what else runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from prm_data.labelers.sandbox import SandboxConfig, isolation_problem, run_python
from prm_data.verifiers.code_tests import CodeTestsConfig, CodeTestsVerifier
from prm_data.verifiers.protocol import OutcomeSpec

RESULTS = Path(__file__).resolve().parent / "results"
LIMITS = CodeTestsConfig(test_seconds=0.5)


def _spec(entry: str, cases: list[tuple[str, str]]) -> OutcomeSpec:
    return OutcomeSpec("code", tests=tuple(f"assert {entry}({args}) == {want}" for args, want in cases),
                       entry_point=entry)


PROBLEMS = {
    "is_palindrome": (_spec("is_palindrome", [("''", "True"), ("'a'", "True"), ("'abba'", "True"),
                                              ("'abca'", "False"), ("'Aba'", "False"), ("'racecar'", "True"),
                                              ("'ab'", "False"), ("'x' * 999 + 'y'", "False")]), {
        "correct": "def is_palindrome(s):\n    return s == s[::-1]\n",
        "wrong": "def is_palindrome(s):\n    return s[:1] == s[-1:]\n",
        "raises": "def is_palindrome(s):\n    return s[0] == s[-1] and is_palindrome(s[1:-1])\n",
        "slow": "def is_palindrome(s):\n    for _ in range(2000):\n        t = ''.join(reversed(s))\n    return s == t\n",
        "hangs": "def is_palindrome(s):\n    while s == 'ab':\n        pass\n    return s == s[::-1]\n",
    }),
    "running_max": (_spec("running_max", [("[]", "[]"), ("[1]", "[1]"), ("[1, 3, 2]", "[1, 3, 3]"),
                                          ("[5, 4, 3]", "[5, 5, 5]"), ("[-2, -1, -3]", "[-2, -1, -1]"),
                                          ("[0, 0]", "[0, 0]"), ("list(range(100))", "list(range(100))")]), {
        "correct": "def running_max(xs):\n    out, best = [], None\n    for x in xs:\n"
                   "        best = x if best is None else max(best, x)\n        out.append(best)\n    return out\n",
        "wrong": "def running_max(xs):\n    return sorted(xs)\n",
        "raises": "def running_max(xs):\n    best = xs[0]\n    return [best := max(best, x) for x in xs]\n",
        "slow": "def running_max(xs):\n    return [max(xs[: i + 1]) for i in range(len(xs)) for _ in range(30)][::30]\n",
        "hangs": "def running_max(xs):\n    while xs == [0, 0]:\n        pass\n    out = []\n    for x in xs:\n"
                 "        out.append(x if not out else max(out[-1], x))\n    return out\n",
    }),
    "gcd": (_spec("gcd", [("12, 18", "6"), ("7, 13", "1"), ("0, 5", "5"), ("5, 0", "5"), ("100, 10", "10"),
                          ("2**40, 2**20", "2**20")]), {
        "correct": "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
        "wrong": "def gcd(a, b):\n    return min(a, b)\n",
        "raises": "def gcd(a, b):\n    return gcd(b, a % b) if a % b else b\n",
        "slow": "import math\ndef gcd(a, b):\n    for _ in range(20000):\n        g = math.gcd(a, b)\n    return g\n",
        "hangs": "def gcd(a, b):\n    while a == 0:\n        pass\n    while b:\n        a, b = b, a % b\n    return a\n",
    }),
    "word_count": (_spec("word_count", [("''", "{}"), ("'a'", "{'a': 1}"), ("'a b a'", "{'a': 2, 'b': 1}"),
                                        ("'  x  '", "{'x': 1}"), ("'A a'", "{'a': 2}"), ("'b\\nb'", "{'b': 2}"),
                                        ("'c, c'", "{'c,': 1, 'c': 1}"), ("'z ' * 500", "{'z': 500}")]), {
        "correct": "def word_count(text):\n    out = {}\n    for w in text.lower().split():\n"
                   "        out[w] = out.get(w, 0) + 1\n    return out\n",
        "wrong": "def word_count(text):\n    out = {}\n    for w in text.split(' '):\n        if w:\n"
                 "            out[w] = out.get(w, 0) + 1\n    return out\n",
        "raises": "def word_count(text):\n    out = {}\n    for w in text.lower().split():\n        out[w] += 1\n"
                  "    return out\n",
        "slow": "from collections import Counter\ndef word_count(text):\n    for _ in range(300):\n"
                "        c = dict(Counter(text.lower().split()))\n    return c\n",
        "hangs": "def word_count(text):\n    while text == 'a':\n        pass\n    out = {}\n"
                 "    for w in text.lower().split():\n        out[w] = out.get(w, 0) + 1\n    return out\n",
    }),
}
MIXES = {"no_hang": ("correct", "wrong", "raises", "slow"), "with_hang": ("correct", "wrong", "raises", "slow", "hangs")}


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(mix: tuple[str, ...], parallel: int, rounds: int) -> dict:
    items = [(spec, solutions[kind]) for _ in range(rounds) for spec, solutions in PROBLEMS.values() for kind in mix]
    verifier = CodeTestsVerifier(LIMITS.model_copy(update={"max_parallel": parallel}))
    cpu0, t0 = _cpu(), time.perf_counter()
    outcomes = verifier.verify_many(items)
    wall = time.perf_counter() - t0
    # bubblewrap's own CPU reaches RUSAGE_CHILDREN; the sandboxed interpreter's does not (it is not
    # reaped by a process we wait for), so each run reports its own (the harness and its workers)
    cpu = _cpu() - cpu0 + sum(o.evidence.get("cpu_seconds", 0.0) for o in outcomes)
    tests = sum(len(o.tests) for o in outcomes)
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[o.status] = statuses.get(o.status, 0) + 1
    timeouts = sum(1 for o in outcomes for t in o.tests if t.error and t.error.startswith("timeout"))
    return {"solutions": len(items), "tests": tests, "parallel": parallel, "wall_s": round(wall, 2),
            "solutions_per_s": round(len(items) / wall, 2), "tests_per_s": round(tests / wall, 1),
            "median_solution_ms": round(1000 * statistics.median(o.seconds for o in outcomes), 1),
            "cpu_s_per_solution": round(cpu / len(items), 4), "statuses": statuses, "tests_timed_out": timeouts,
            "tests_passed": sum(t.passed for o in outcomes for t in o.tests)}


def expected_statuses(mix: tuple[str, ...]) -> dict[str, str]:
    """What each kind must come out as: the benchmark refuses figures from a verifier that got them wrong."""
    return {kind: "correct" if kind in ("correct", "slow") else "incorrect" for kind in mix}


def check(mix: tuple[str, ...]) -> None:
    verifier = CodeTestsVerifier(LIMITS)
    for name, (spec, solutions) in PROBLEMS.items():
        for kind, want in expected_statuses(mix).items():
            got = verifier.verify(spec, solutions[kind])
            if got.status != want:
                raise SystemExit(f"{name}/{kind}: {got.status} ({got.reason}), expected {want}")


def run(quick: bool = False) -> dict:
    problem = isolation_problem()
    if problem is not None:
        raise SystemExit(f"sandbox unavailable: {problem}")
    check(MIXES["with_hang"])
    rounds = 1 if quick else 3
    startup = []
    for _ in range(5 if quick else 15):
        t0 = time.perf_counter()
        run_python("pass", SandboxConfig())
        startup.append(time.perf_counter() - t0)
    out = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
                       "python": platform.python_version(), "kernel": platform.release()},
           "limits": LIMITS.model_dump(exclude={"max_parallel"}),
           "assumptions": "4 HumanEval/MBPP-style problems, 6-8 tests each; per problem one solution of each kind "
                          "in the mix (correct, wrong, raises, slow; with_hang adds one that loops forever on one "
                          "input); every test of every solution counted as executed; CPU = this process plus all "
                          "children (bubblewrap, harness, workers)",
           "sandboxed_pass_median_ms": round(1000 * statistics.median(startup), 1), "cells": {}}
    for mix_name, mix in MIXES.items():
        for parallel in (1, 2, 4):
            out["cells"][f"{mix_name}/parallel_{parallel}"] = measure(mix, parallel, rounds)
    return out


def show(result: dict) -> None:
    print(f"load average at start {result['machine']['load_avg_at_start']}, {result['machine']['cpus']} cpus; "
          f"test_seconds {result['limits']['test_seconds']}; a sandboxed `pass` {result['sandboxed_pass_median_ms']} ms")
    print(f"{'mix/parallel':<22} {'solutions':>9} {'tests':>6} {'sol/s':>7} {'tests/s':>8} {'median ms':>10} "
          f"{'CPU s/sol':>10} {'timeouts':>9}")
    for name, c in result["cells"].items():
        print(f"{name:<22} {c['solutions']:>9} {c['tests']:>6} {c['solutions_per_s']:>7} {c['tests_per_s']:>8} "
              f"{c['median_solution_ms']:>10} {c['cpu_s_per_solution']:>10} {c['tests_timed_out']:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round per cell")
    args = parser.parse_args()
    result = run(args.quick)
    show(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "code_verifier_throughput.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
