"""Math answers: the final answer extracted and compared with math-verify (prm_data/answers.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prm_data.answers import grade, ungradeable_reason
from prm_data.verifiers.protocol import Outcome, OutcomeSpec


class MathAnswerVerifier:
    """Correct when the solution's final answer equals the gold one (math-verify, never string equality)."""

    name = "math"
    version = "1"

    def ungradeable_reason(self, spec: OutcomeSpec) -> str | None:
        return "the problem has no gold answer" if spec.answer is None else ungradeable_reason(spec.answer)

    def verify(self, spec: OutcomeSpec, text: str) -> Outcome:
        started = time.perf_counter()
        status, answer = grade(text, spec.answer or "")
        reason = {"unparseable": "no final answer could be extracted",
                  "ungradeable": "the gold answer cannot be graded"}.get(status)
        return Outcome(status, 1.0 if status == "correct" else 0.0, self.name, self.version, answer=answer,
                       reason=reason, seconds=time.perf_counter() - started)

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        return [self.verify(spec, text) for spec, text in items]
