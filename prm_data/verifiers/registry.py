"""The outcome verifiers by name: the one place that says which exist.

A problem's `OutcomeSpec.verifier` names one of these; `Verifiers.verify`
grades with it. `Verifiers(config)` is a run's set, configured from the run
config's `verifiers:` section (`VerifiersConfig`); the module-level `VERIFIERS`,
`verify` and `verify_many` are the default set. Adding a verifier is one module
plus one line in `Verifiers.__init__`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from prm_data.verifiers.code_tests import CodeTestsConfig, CodeTestsVerifier
from prm_data.verifiers.exact_match import ExactMatchVerifier
from prm_data.verifiers.math_answer import MathAnswerVerifier
from prm_data.verifiers.multiple_choice import MultipleChoiceVerifier
from prm_data.verifiers.protocol import Outcome, OutcomeSpec, OutcomeVerifier


class VerifiersConfig(BaseModel):
    """Settings of the outcome verifiers that have any (`verifiers:` in the run config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: CodeTestsConfig = Field(default_factory=CodeTestsConfig,
                                  description="Limits of the code verifier's sandboxed test runs.")


class Verifiers:
    """One run's verifiers, by name, configured."""

    def __init__(self, config: VerifiersConfig | None = None):
        self.config = config or VerifiersConfig()
        found: list[OutcomeVerifier] = [MathAnswerVerifier(), CodeTestsVerifier(self.config.code),
                                        ExactMatchVerifier(), MultipleChoiceVerifier()]
        self.by_name: dict[str, OutcomeVerifier] = {v.name: v for v in found}

    def verifier(self, name: str) -> OutcomeVerifier:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"unknown outcome verifier {name!r}; known: {sorted(self.by_name)}") from None

    def ungradeable_reason(self, spec: OutcomeSpec) -> str | None:
        """Why no solution of this problem can be graded (unknown verifier included), else None."""
        if spec.verifier not in self.by_name:
            return f"unknown outcome verifier {spec.verifier!r}; known: {sorted(self.by_name)}"
        return self.by_name[spec.verifier].ungradeable_reason(spec)

    def verify(self, spec: OutcomeSpec, text: str) -> Outcome:
        return self.verifier(spec.verifier).verify(spec, text)

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        """Grade `(spec, text)` pairs, batching per verifier (code: parallel sandboxes); results in input order."""
        out: list[Outcome | None] = [None] * len(items)
        by_name: dict[str, list[int]] = {}
        for i, (spec, _) in enumerate(items):
            by_name.setdefault(spec.verifier, []).append(i)
        for name, idx in by_name.items():
            for i, outcome in zip(idx, self.verifier(name).verify_many([items[i] for i in idx])):
                out[i] = outcome
        return out  # type: ignore[return-value]


DEFAULT = Verifiers()
VERIFIERS: dict[str, OutcomeVerifier] = DEFAULT.by_name


def verifier(name: str) -> OutcomeVerifier:
    return DEFAULT.verifier(name)


def ungradeable_reason(spec: OutcomeSpec) -> str | None:
    return DEFAULT.ungradeable_reason(spec)


def verify(spec: OutcomeSpec, text: str) -> Outcome:
    return DEFAULT.verify(spec, text)


def verify_many(items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
    """Grade `(spec, text)` pairs with the default verifiers; results in input order."""
    return DEFAULT.verify_many(items)
