"""Multiple choice: the option the solution picks (a letter, or an option's text) is the gold letter.

Benchmarks such as MMLU (Hendrycks et al., arXiv 2009.03300) and AQuA-RAT grade
the chosen option. The gold answer is a letter (`B`, `(B)`, `b`); with
`OutcomeSpec.choices` (the options' texts in letter order) a solution may also
name its option by text. What the solution picks, in order of preference: the
last `\\boxed{...}`; the last "answer is (X)" / "answer: X" / "option X" /
"choice X"; the final answer line (`exact_match.final_answer`) when it is a
lone letter like `C`, `(C)`, `C.` or `C)`, or starts with one followed by the
option's text (`(C) 42`); else that line's text equal (normalized as in
`exact_match.normalize`) to exactly one option's text. Letters run from A to
E, or to the last option when `choices` are given (at most 10).
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Sequence

from prm_data.verifiers.exact_match import _EMPHASIS, final_answer, last_boxed, normalize
from prm_data.verifiers.protocol import Outcome, OutcomeSpec

_MARKED = re.compile(r"^(?:\(\s*([A-Za-z])\s*\)|([A-Za-z])[.:)])(?:\s+(.*))?$|^([A-Za-z])$", re.S)
_NAMED = re.compile(r"(?:answer\s*(?:is|:)|option|choice)\s*:?\s*\(?\s*([A-J])\s*\)?(?![A-Za-z0-9])", re.I)


def letters(spec: OutcomeSpec) -> str:
    return string.ascii_uppercase[: len(spec.choices)] if spec.choices else "ABCDE"


def _marked_letter(text: str) -> tuple[str | None, str | None]:
    """`(C)`, `C.`, `C)`, `C:` or a lone `C`, optionally followed by text: (letter, text), else (None, None)."""
    m = _MARKED.match(text.strip())
    if not m:
        return None, None
    return (m.group(1) or m.group(2) or m.group(4)).upper(), m.group(3)


def gold_letter(spec: OutcomeSpec) -> str | None:
    letter, rest = _marked_letter(spec.answer or "")
    return letter if letter is not None and letter in letters(spec) and rest is None else None


def picked_option(spec: OutcomeSpec, text: str) -> str | None:
    """The letter the solution picks, or None when it picks none (rules in the module docstring)."""
    valid = letters(spec)
    options = {normalize(c): string.ascii_uppercase[i] for i, c in enumerate(spec.choices)}
    clean = _EMPHASIS.sub("", text)
    candidates = []
    boxed = last_boxed(clean)
    if boxed is not None:
        candidates.append(boxed)
    named = [m.group(1).upper() for m in _NAMED.finditer(clean)]
    if named:
        candidates.append(named[-1])
    line = final_answer(clean)
    if line is not None:
        candidates.append(line)
    for candidate in candidates:
        letter, rest = _marked_letter(candidate)
        if letter is not None and letter in valid and (rest is None or not options or options.get(normalize(rest)) == letter):
            return letter
        if normalize(candidate) in options:
            return options[normalize(candidate)]
    return None


class MultipleChoiceVerifier:
    """Correct when the option the solution picks is the gold letter."""

    name = "choice"
    version = "1"

    def ungradeable_reason(self, spec: OutcomeSpec) -> str | None:
        if len(spec.choices) > 10:
            return f"{len(spec.choices)} options: at most 10 (A to J) are supported"
        if len({normalize(c) for c in spec.choices}) != len(spec.choices):
            return "two options have the same text"
        if gold_letter(spec) is None:
            return f"gold answer {spec.answer!r} is not one of the letters {letters(spec)}"
        return None

    def verify(self, spec: OutcomeSpec, text: str) -> Outcome:
        started = time.perf_counter()
        refused = self.ungradeable_reason(spec)
        if refused is not None:
            return Outcome("ungradeable", 0.0, self.name, self.version, reason=refused)
        picked = picked_option(spec, text)
        if picked is None:
            return Outcome("unparseable", 0.0, self.name, self.version, reason="the solution picks no option",
                           seconds=time.perf_counter() - started)
        ok = picked == gold_letter(spec)
        return Outcome("correct" if ok else "incorrect", float(ok), self.name, self.version, answer=picked,
                       reason=None if ok else f"picked {picked}, the answer is {gold_letter(spec)}",
                       seconds=time.perf_counter() - started)

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        return [self.verify(spec, text) for spec, text in items]
