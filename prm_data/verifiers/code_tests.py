"""Code: run the problem's unit tests on the solution's code in the OS sandbox.

The outcome of a code problem is what execution-based benchmarks report
(HumanEval, Chen et al., arXiv 2107.03374; MBPP, Austin et al., arXiv
2108.07732): whether the solution's function passes the problem's unit tests.
The score is the (weighted) share of tests passed, the dense signal that
per-test rewards read (VeRPO-style partial credit; PRIME, arXiv 2502.01456,
uses the same outcome verifier for code).

One sandbox run (prm_data/labelers/sandbox.py: bubblewrap namespaces, rlimits)
per solution, since starting one costs tens of milliseconds; inside it
`code_harness` loads the solution once in a worker process and runs the tests
one by one, each under `test_seconds`, the whole under `budget_seconds`,
restarting the worker after a test that crashed it, exited, hung or left
processes behind. Every test gets a `TestResult` (passed, seconds, one-line
error); bad code of any kind (no code, a syntax error, no entry point, an
endless loop at import, a crash, 100 MB of output, a fork bomb, a hung test)
gives an `incorrect` outcome with the reason, never an exception.

Which code is run (`solution_code`): the solution text may be plain code or
reasoning with fenced blocks (```python, ```py, ```python3 or a bare ```; an
unclosed last fence runs to the end of the text). With fenced blocks, the last
one that defines the entry point at top level (`def f`, `async def f`,
`class f`, `f = ...`) is run alone; if none does, all blocks joined in order;
without fenced blocks, the whole text.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from prm_data.labelers.sandbox import SandboxConfig, SandboxResult, run_python
from prm_data.verifiers.protocol import Outcome, OutcomeSpec, TestResult

HARNESS_SOURCE = Path(__file__).with_name("code_harness.py").read_text(encoding="utf-8")
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.M | re.S)
_PYTHON_FENCES = {"", "python", "py", "python3"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CodeTestsConfig(BaseModel):
    """Limits of one solution's test run (per test and per solution) and how many run at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    test_seconds: float = Field(1.0, gt=0, description="Wall-clock limit of one unit test (SIGALRM in the worker, "
                                "then a kill by the harness `grace_seconds` later); a test over it fails as timeout.")
    load_seconds: float = Field(2.0, gt=0, description="Wall-clock limit for the problem's setup plus the "
                                "solution's top-level code (imports, definitions).")
    budget_seconds: float = Field(10.0, gt=0, description="Wall-clock budget of one solution's whole test run "
                                  "(loads included); tests left when it is spent fail as not run.")
    grace_seconds: float = Field(0.5, ge=0, description="How long after a limit the harness waits before it kills "
                                 "a worker that ignored the alarm (a loop in C code, a caught BaseException).")
    startup_seconds: float = Field(10.0, gt=0, description="Allowance for starting the sandbox (bubblewrap, the "
                                   "interpreter), added to `budget_seconds` for the sandbox's own wall limit.")
    cpu_seconds: int = Field(20, ge=1, description="RLIMIT_CPU of each process of a run (SIGXCPU after it).")
    memory_mb: int = Field(512, ge=64, description="RLIMIT_AS of each process of a run, in MiB.")
    max_output_bytes: int = Field(1_000_000, ge=4096, description="Largest output one test may write (stdout "
                                  "and stderr, and any file): RLIMIT_FSIZE; writing more fails the test.")
    max_processes: int = Field(16, ge=4, description="RLIMIT_NPROC: processes plus threads of one run.")
    tmp_mb: int = Field(64, ge=8, description="The run's private tmpfs working folder, in MiB.")
    max_parallel: int | None = Field(None, ge=1, description="Solutions tested at once by `verify_many` (one "
                                     "sandbox each), across every thread that verifies; None = twice the machine's CPU count (a sandbox's start is "
                                     "mostly waiting, not CPU: benchmarks/code_verifier_throughput.py).")

    def sandbox(self, n_tests: int) -> SandboxConfig:
        return SandboxConfig(cpu_seconds=self.cpu_seconds, wall_seconds=self.budget_seconds + self.startup_seconds,
                             memory_mb=self.memory_mb, max_file_bytes=self.max_output_bytes,
                             max_output_chars=4_000 + 800 * n_tests, max_processes=self.max_processes,
                             tmp_mb=self.tmp_mb)


def _defines(block: str, name: str) -> bool:
    pattern = rf"^(?:async[ \t]+def|def|class)[ \t]+{re.escape(name)}\b|^{re.escape(name)}[ \t]*(?::[^=\n]*)?="
    return re.search(pattern, block, re.M) is not None


def solution_code(text: str, entry_point: str | None) -> str:
    """The code to run from a solution text (the rule is in the module docstring)."""
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _PYTHON_FENCES]
    if not blocks:
        return text
    if entry_point:
        defining = [b for b in blocks if _defines(b, entry_point)]
        if defining:
            return defining[-1]
    return "\n\n".join(blocks)


def _test_name(test: str) -> str:
    first = next((line.strip() for line in test.splitlines() if line.strip()), "")
    return first if len(first) <= 80 else first[:77] + "..."


def _unescape(text: str) -> str:
    try:
        return text.encode("ascii").decode("unicode_escape")
    except (UnicodeError, ValueError):
        return text


class CodeTestsVerifier:
    """Correct when the solution's code passes every unit test of the problem; score = share passed."""

    name = "code"
    version = "1"
    concurrent = True  # `verify` may run on many threads at once (each run is its own sandbox; `_slots` bound them)

    def __init__(self, config: CodeTestsConfig = CodeTestsConfig()):
        self.config = config
        self.max_parallel = config.max_parallel or 2 * (os.cpu_count() or 1)
        # one bound for every caller: pipelined labelers verify from many threads at once
        self._slots = threading.BoundedSemaphore(self.max_parallel)

    def ungradeable_reason(self, spec: OutcomeSpec) -> str | None:
        if not spec.tests:
            return "the problem has no unit tests"
        if spec.entry_point is not None and not _IDENTIFIER.fullmatch(spec.entry_point):
            return f"entry point {spec.entry_point!r} is not a Python name"
        for what, source in [("setup", spec.setup)] + [(f"test {i}", t) for i, t in enumerate(spec.tests)]:
            try:
                compile(source, f"<{what}>", "exec")
            except (SyntaxError, ValueError) as exc:
                return f"the problem's {what} does not compile: {type(exc).__name__}: {exc}"
        if spec.weights and (min(spec.weights) < 0 or sum(spec.weights) <= 0):
            return "test weights must be non-negative with a positive sum"
        return None

    def verify(self, spec: OutcomeSpec, text: str) -> Outcome:
        started = time.perf_counter()
        refused = self.ungradeable_reason(spec)
        if refused is not None:
            return self._outcome(spec, "ungradeable", [], refused, started)
        code = solution_code(text, spec.entry_point)
        if not code.strip():
            return self._outcome(spec, "unparseable", [], "the solution contains no code", started)
        token = secrets.token_hex(16)
        data = (token, spec.setup, code, spec.entry_point or "", tuple(spec.tests), self.config.test_seconds,
                self.config.load_seconds, self.config.budget_seconds, self.config.grace_seconds)
        with self._slots:
            result = run_python(f"SPEC = {data!r}\n{HARNESS_SOURCE}", self.config.sandbox(len(spec.tests)))
        return self._from_run(spec, token, result, started)

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        if len(items) <= 1:
            return [self.verify(spec, text) for spec, text in items]
        workers = min(len(items), self.max_parallel)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-tests") as pool:
            return list(pool.map(lambda item: self.verify(*item), items))

    def _from_run(self, spec: OutcomeSpec, token: str, result: SandboxResult, started: float) -> Outcome:
        passed: dict[int, tuple[bool, float, str]] = {}
        began = ended = False
        load_error = None
        cpu = None
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if fields[0] != token or len(fields) < 2:
                continue  # not the harness's (it is the only writer of stdout, but be strict)
            kind = fields[1]
            if kind == "start":
                began = True
            elif kind == "end":
                ended = True
                try:
                    cpu = float(fields[2])
                except (IndexError, ValueError):
                    cpu = None
            elif kind == "load" and len(fields) == 5 and fields[2] == "fail" and load_error is None:
                load_error = _unescape(fields[4])
            elif kind == "test" and len(fields) == 6 and fields[2].isdigit():
                i = int(fields[2])
                if 0 <= i < len(spec.tests) and i not in passed:
                    try:
                        seconds = float(fields[4])
                    except ValueError:
                        seconds = 0.0
                    passed[i] = (fields[3] == "P", seconds, _unescape(fields[5]))
        if not began:
            why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1][:200]
            return self._outcome(spec, "error", [], f"the test harness did not start (sandbox {result.status}: "
                                 f"{why})", started, sandbox_status=result.status)
        missing = ("not run: the sandbox's wall limit ended the run" if result.status == "timeout" else
                   f"not run: the harness stopped (sandbox {result.status}, exit code {result.returncode})")
        tests = []
        for i, test in enumerate(spec.tests):
            ok, seconds, error = passed.get(i, (False, 0.0, missing))
            tests.append(TestResult(_test_name(test), ok, seconds, None if ok else (error or "failed")))
        all_passed = len(passed) == len(spec.tests) and all(t.passed for t in tests)
        first = next((i for i, t in enumerate(tests) if not t.passed), None)
        reason = None if first is None else (load_error or f"test {first} ({tests[first].name}): {tests[first].error}")
        extra = {} if ended and result.status == "ok" else {"sandbox_status": result.status}
        if cpu is not None:
            extra["cpu_seconds"] = cpu  # inside the sandbox (the interpreter's start included), not bubblewrap's
        return self._outcome(spec, "correct" if all_passed else "incorrect", tests, reason, started, **extra)

    def _outcome(self, spec: OutcomeSpec, status, tests: list[TestResult], reason: str | None, started: float,
                 **evidence) -> Outcome:
        if not tests:
            tests = [TestResult(_test_name(t), False, 0.0, reason) for t in spec.tests]
        weights = spec.weights or (1.0,) * len(tests)
        total = sum(weights)
        score = sum(w for w, t in zip(weights, tests) if t.passed) / total if total > 0 else 0.0
        return Outcome(status, score, self.name, self.version, tests=tuple(tests), reason=reason,
                       seconds=time.perf_counter() - started, evidence=evidence,
                       fault=_fault(status, tests, reason, evidence.get("sandbox_status")))


# How the harness (code_harness.py) and _from_run describe a run that went wrong rather than a test that
# failed: a limit, a kill, an exit, a closed channel, a test never run. An assertion or an exception the
# code raised is a wrong result, not a fault.
_FAULT_MARKS = ("timeout:", "output limit:", "SystemExit(", "not run:", "(killed)", "the CPU limit killed it",
                "the interpreter crashed", "the interpreter aborted", "it was killed", "the process exited with code",
                "closed the harness's result channel")


def _fault(status: str, tests: Sequence[TestResult], reason: str | None, sandbox_status: str | None) -> str | None:
    """Why a solution's run went wrong (recorded as a `failures` row), or None for a right or merely wrong one."""
    if status == "error":
        return reason or "the test harness could not run the solution"
    faulty = [t for t in tests if not t.passed and t.error and any(m in t.error for m in _FAULT_MARKS)]
    if faulty:
        more = f" (and {len(faulty) - 1} more tests)" if len(faulty) > 1 else ""
        return f"test {tests.index(faulty[0])} ({faulty[0].name}): {faulty[0].error}{more}"
    if sandbox_status not in (None, "ok"):
        return f"the sandbox ended the run: {sandbox_status}"
    return None
