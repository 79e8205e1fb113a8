"""The outcome verifiers by name: the one place that says which exist.

A problem's `OutcomeSpec.verifier` names one of these; `verify` grades with it.
Adding a verifier is one module plus one line here.
"""

from __future__ import annotations

from collections.abc import Sequence

from prm_data.verifiers.math_answer import MathAnswerVerifier
from prm_data.verifiers.protocol import Outcome, OutcomeSpec, OutcomeVerifier

VERIFIERS: dict[str, OutcomeVerifier] = {
    MathAnswerVerifier.name: MathAnswerVerifier(),
}


def verifier(name: str) -> OutcomeVerifier:
    try:
        return VERIFIERS[name]
    except KeyError:
        raise KeyError(f"unknown outcome verifier {name!r}; known: {sorted(VERIFIERS)}") from None


def verify(spec: OutcomeSpec, text: str) -> Outcome:
    return verifier(spec.verifier).verify(spec, text)


def verify_many(items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
    """Grade `(spec, text)` pairs, batching per verifier; results in input order."""
    out: list[Outcome | None] = [None] * len(items)
    by_name: dict[str, list[int]] = {}
    for i, (spec, _) in enumerate(items):
        by_name.setdefault(spec.verifier, []).append(i)
    for name, idx in by_name.items():
        for i, outcome in zip(idx, verifier(name).verify_many([items[i] for i in idx])):
            out[i] = outcome
    return out  # type: ignore[return-value]
