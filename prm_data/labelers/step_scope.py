"""What a step does with the values it names: states them, tries them, lists them, or refutes something.

Real solutions try candidates ("Now try y = 1: ..."), split cases ("Case 2: x < 0"),
list several solutions ("x = 2 or x = 3") and test equations they expect to fail
("For d=2, ... = 61 with no positive integer solution"). A value named there holds
only inside that step: the tool verifier neither carries it to later steps nor
substitutes it into equations, and its typo check stays silent, because a
candidate is not a copying error. Words that announce a refutation or a
self-correction ("wrong", "contradiction", "wait") and modular arithmetic (`mod`,
`≡`, "remainder": `= 2` there means congruent) make the step's false-looking
equalities statements it does not assert, so the verifier reports them without
contradicting the step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRIAL = re.compile(
    r"\b(?:try|tries|trying|tried|suppose|supposing|assume|assuming|if|check|checking|checks|test|testing|"
    r"tests|consider|considering|plug|plugging|plugged|guess|when|whenever|case|cases|otherwise|else|"
    r"candidate|candidates|attempt|say|could|would)\b|\b(?:for|with|at|taking|take)\s+\$?[a-z](?:_\w+)?\s*=",
    re.I)
_LISTING = re.compile(r"\b(?:or|solutions?|roots?|pairs?|either|another|second|first|third|both|each|values?|"
                      r"possible|possibilities)\b", re.I)
_REFUTE = re.compile(r"\b(?:false|wrong|impossible|contradiction|contradicts|absurd|incorrect|mistake|typo|oops|"
                     r"wait|actually|correction|instead|should be|not equal|cannot be|can't be|isn't|is not)\b",
                     re.I)
_MODULAR = re.compile(r"\bmod\b|\bmodulo\b|≡|\\equiv|\\pmod|\\bmod|congruen|remainder|residue", re.I)
_RESET = re.compile(r"\b(?:let|define|denote|set|alternatively|another|new|now)\b|^\s*(?:\**)?(?:case|solution)\b",
                    re.I)


@dataclass(frozen=True)
class StepScope:
    """How the tool verifier treats the values and equations of one step."""

    trial: bool  # tries, supposes, splits cases: its values are local, nothing is substituted
    listing: bool  # names several values (solutions, roots, candidates): its values are local
    refutes: bool  # announces a refutation or a correction: false-looking claims are not contradicted
    modular: bool  # congruences: `a = b` may mean a ≡ b
    resets: bool  # introduces new names: values carried from earlier steps no longer hold

    @property
    def local(self) -> bool:
        """Values named here hold only in this step."""
        return self.trial or self.listing


def scope_of(text: str) -> StepScope:
    return StepScope(trial=bool(_TRIAL.search(text)), listing=bool(_LISTING.search(text)),
                     refutes=bool(_REFUTE.search(text)), modular=bool(_MODULAR.search(text)),
                     resets=bool(_RESET.search(text)))
