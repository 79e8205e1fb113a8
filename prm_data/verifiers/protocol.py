"""The outcome-verifier protocol: (problem, completed solution) -> `Outcome`.

Every labeler that samples (Monte Carlo, OmegaPRM, siblings, progress), the
rollout grader and `problem_outcome` decide success the same way: they ask the
problem's verifier. A problem says which verifier grades it in its
`OutcomeSpec` (stored in `problems.metadata` under `"outcome"`; a problem
without one is a math problem graded against `problems.answer`, as before), and
`prm_data.verifiers.registry.verify(spec, text)` returns the `Outcome`.

An `Outcome` has a hard status, a soft score in [0, 1] (math: 1 or 0; code:
the share of unit tests passed), the evidence behind it (the extracted answer,
per-test results), what it cost (seconds, tests run), and the verifier's name
and version, which are stored with every label decided by it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

Status = Literal["correct", "incorrect", "unparseable", "ungradeable", "error"]


@dataclass(frozen=True)
class OutcomeSpec:
    """What a problem's solution is checked against, and by which verifier.

    - `verifier`: a name in `prm_data.verifiers.registry.VERIFIERS` (`math`, `code`, `exact`, `choice`);
    - `answer`: the gold answer (math, exact, choice);
    - `tests`: code: each a self-contained Python snippet (usually one `assert`) run after the
      solution's code and `setup`; the function under test is `entry_point`;
    - `weights`: optional per-test weights (default equal), read by soft scores;
    - `choices`: multiple choice: the options' texts in letter order (A, B, ...), optional; with
      them a solution may name its option by text as well as by letter.
    """

    verifier: str = "math"
    answer: str | None = None
    tests: tuple[str, ...] = ()
    entry_point: str | None = None
    setup: str = ""
    weights: tuple[float, ...] = ()
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("tests", "weights", "choices"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.weights and len(self.weights) != len(self.tests):
            raise ValueError(f"{len(self.weights)} test weights for {len(self.tests)} tests")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "OutcomeSpec":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown outcome spec keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_problem(cls, row: Mapping) -> "OutcomeSpec":
        """The spec of a `problems` row: `metadata["outcome"]` when present, else math against `answer`."""
        meta = row.get("metadata")
        if isinstance(meta, str) and meta:
            meta = json.loads(meta)
        if isinstance(meta, Mapping) and meta.get("outcome"):
            return cls.from_dict(meta["outcome"])
        answer = row.get("answer")
        return cls("math", None if answer is None else str(answer))


@dataclass(frozen=True)
class TestResult:
    """One unit test's run: passed or not, its wall time and, when it failed, why (one line)."""

    name: str
    passed: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A verifier's decision on one completed solution."""

    status: Status
    score: float  # soft success in [0, 1]: 1/0 for math; weighted share of tests passed for code
    verifier: str
    version: str
    answer: str | None = None  # the extracted final answer (math, exact, choice); None for code
    tests: tuple[TestResult, ...] = ()  # code: one per test, in spec order
    reason: str | None = None  # why it is not correct, one line (unparseable, error, first failed test)
    seconds: float = 0.0  # what verifying cost
    evidence: dict = field(default_factory=dict)  # anything else worth storing (JSON-able)
    # Why the solution's run itself went wrong (it hung, crashed, hit a limit, or the harness could not
    # run it), as opposed to a wrong result: the pipeline records it as a `failures` row. None otherwise.
    fault: str | None = None

    @property
    def success(self) -> bool:
        return self.status == "correct"

    @property
    def tag(self) -> str:
        """`name@version`, stored with every label this outcome decided."""
        return f"{self.verifier}@{self.version}"

    def to_evidence(self) -> dict:
        """JSON-able summary for a label's or row's evidence."""
        out = {"verifier": self.tag, "status": self.status, "score": self.score}
        if self.tests:
            out["tests_passed"] = [t.passed for t in self.tests]
        if self.reason:
            out["reason"] = self.reason
        if self.fault:
            out["fault"] = self.fault
        return out | self.evidence


class OutcomeVerifier(Protocol):
    """One way of deciding success. `verify_many` may batch (code runs tests in parallel)."""

    name: str
    version: str

    def ungradeable_reason(self, spec: OutcomeSpec) -> str | None:
        """Why no solution of a problem with this spec can be graded (refused at the source), else None."""

    def verify(self, spec: OutcomeSpec, text: str) -> Outcome:
        """Grade one completed solution (the whole text: prefix plus continuation). Never raises for the text's faults."""

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        """Grade several; same results as `verify` one by one, in order."""
