"""Outcome verifiers that grade each distinct (problem, program) once, for the benchmarks of the code simulator.

The code simulator writes the same programs again and again (the reference most of all: 211 distinct
programs among 1,920 Monte Carlo completions of 6 problems), and a program of the code bank passes or fails
its tests the same way every time it runs (no randomness, no clock; a test far under the sandbox's time
limit), so grading a repeat again in the sandbox would only cost wall time. Labels, calls and tokens are
exactly those of the plain verifiers; `counts()` says how many gradings were asked and how many ran.
Not for real models' output: a program that reads the clock, or runs near a time limit, can differ per run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prm_data.verifiers.protocol import Outcome, OutcomeSpec
from prm_data.verifiers.registry import Verifiers


class MemoVerifiers(Verifiers):
    """The default verifiers, each distinct `(spec, text)` graded once (thread-safe: pipelined labelers grade
    on worker threads)."""

    def __init__(self):
        super().__init__()
        self._memo: dict[tuple[OutcomeSpec, str], Outcome] = {}
        self._lock = threading.Lock()
        self.asked = 0

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        with self._lock:
            self.asked += len(items)
            todo = [item for item in dict.fromkeys(items) if item not in self._memo]
        for item, outcome in zip(todo, super().verify_many(todo)):
            with self._lock:
                self._memo[item] = outcome
        with self._lock:
            return [self._memo[item] for item in items]

    def counts(self) -> dict[str, int]:
        return {"gradings_asked": self.asked, "programs_run": len(self._memo)}
