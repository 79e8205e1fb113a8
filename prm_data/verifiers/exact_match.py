"""Exact match: the solution's final answer equals the gold one as a normalized string.

For answers that are words or names, not mathematics (short-answer QA, a
label, an identifier), where math-verify's parsing would be wrong. The final
answer is, in order of preference: the last `\\boxed{...}`, the last
`#### ...` line, the rest of the last line that says `answer is ...` or
`Answer: ...`, else the last non-empty line. Both sides are normalized the
same way (`normalize`): Unicode NFKC, case folded, markdown emphasis (`**`,
`__`, backticks) removed, whitespace runs collapsed to one space, surrounding
quotes and brackets and trailing `.`, `!`, `;`, `:`, `,` stripped. Inner
punctuation is kept: `U.S.` stays `u.s`, `3-4` is not `34`.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence

from prm_data.verifiers.protocol import Outcome, OutcomeSpec

_BOXED = re.compile(r"\\boxed\s*\{")
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.M)
_ANSWER_LINE = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:)\s*:?\s*(.+?)\s*$", re.I | re.M)
_EMPHASIS = re.compile(r"\*\*|__|`")
_EDGES = " \t\"'“”‘’«»()[]{}"
_TRAILING = ".!;:,"


def last_boxed(text: str) -> str | None:
    """The contents of the last complete `\\boxed{...}` (braces balanced), or None."""
    found = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[m.end(): i - 1]
    return found


def final_answer(text: str) -> str | None:
    """The solution's stated final answer (the order of preference is in the module docstring)."""
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1]
    lines = _ANSWER_LINE.findall(_EMPHASIS.sub("", text))
    if lines:
        return lines[-1]
    rest = [line.strip() for line in text.splitlines() if line.strip()]
    return rest[-1] if rest else None


def normalize(text: str) -> str:
    """The comparison form of an answer (rules in the module docstring)."""
    out = " ".join(_EMPHASIS.sub("", unicodedata.normalize("NFKC", text)).casefold().split())
    previous = None
    while out != previous:
        previous = out
        out = out.strip(_EDGES).rstrip(_TRAILING).strip()
    return out


class ExactMatchVerifier:
    """Correct when the normalized final answer equals the normalized gold answer."""

    name = "exact"
    version = "1"

    def ungradeable_reason(self, spec: OutcomeSpec) -> str | None:
        if spec.answer is None or not normalize(spec.answer):
            return "the problem has no gold answer to match"
        return None

    def verify(self, spec: OutcomeSpec, text: str) -> Outcome:
        started = time.perf_counter()
        refused = self.ungradeable_reason(spec)
        if refused is not None:
            return Outcome("ungradeable", 0.0, self.name, self.version, reason=refused)
        answer = final_answer(text)
        if answer is None or not normalize(answer):
            return Outcome("unparseable", 0.0, self.name, self.version, reason="no final answer could be found",
                           seconds=time.perf_counter() - started)
        ok = normalize(answer) == normalize(spec.answer or "")
        return Outcome("correct" if ok else "incorrect", float(ok), self.name, self.version, answer=answer,
                       reason=None if ok else f"{normalize(answer)!r} is not {normalize(spec.answer or '')!r}",
                       seconds=time.perf_counter() - started)

    def verify_many(self, items: Sequence[tuple[OutcomeSpec, str]]) -> list[Outcome]:
        return [self.verify(spec, text) for spec, text in items]
