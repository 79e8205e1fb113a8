"""Final-answer extraction and equivalence, never by string equality.

Extraction looks, in order, for the last `\\boxed{...}` (balanced braces), the
last "The answer is ...", a GSM8K-style `#### 42`, and gives up otherwise
(an unparseable answer is a status, not a guess). Equivalence is decided by
math-verify (LaTeX, fractions, 0.5 vs 1/2, units stripped) with a numeric
fallback.
"""

from __future__ import annotations

import re
from functools import lru_cache

from math_verify import parse, verify

_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.I | re.S)
_HASHES = re.compile(r"####\s*(.+?)\s*$", re.M)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _last_boxed(text: str) -> str | None:
    idx = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if idx < 0:
        return None
    i = text.index("{", idx) + 1
    depth, start = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
        i += 1
    return None  # unbalanced: a truncated answer is no answer


def extract_answer(text: str) -> str | None:
    """The final answer stated in `text`, or None when it states none."""
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    found = _ANSWER_IS.findall(text)
    if found:
        ans = found[-1].strip().strip("$ ").rstrip(".")
        if ans:
            return ans
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    return None


def gsm8k_answer(solution: str) -> str | None:
    """The number after `####` in a GSM8K solution, commas removed."""
    hashes = _HASHES.findall(solution or "")
    return hashes[-1].replace(",", "").strip() if hashes else None


@lru_cache(maxsize=65536)
def _parsed(expr: str):
    # `\$` is a currency sign, not a math delimiter.
    expr = expr.replace("\\$", "")
    # Bare LaTeX must be wrapped in math delimiters: math-verify reads an undelimited
    # `\dfrac{3}{4}` as nothing and `2\sqrt{2}` as just `2` (a false match with "2").
    if "$" not in expr and not expr.lstrip().startswith(("\\(", "\\[")):
        out = parse(f"${expr}$")
        if out:
            return out
    return parse(expr)


def _as_number(expr: str) -> float | None:
    s = expr.replace(",", "").replace("$", "").strip()
    m = _NUMBER.fullmatch(s) or _NUMBER.fullmatch(re.sub(r"\s*[A-Za-z%]+\.?$", "", s))
    if not m:
        return None
    tok = m.group(0)
    try:
        if "/" in tok:
            a, b = tok.split("/")
            return float(a) / float(b)
        return float(tok)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(predicted: str | None, gold: str | None) -> bool:
    """True when `predicted` is mathematically the same answer as `gold`."""
    if predicted is None or gold is None or not str(predicted).strip() or not str(gold).strip():
        return False
    p, g = str(predicted).strip(), str(gold).strip()
    try:
        if verify(_parsed(g), _parsed(p)):
            return True
    except Exception:  # math-verify can raise on exotic input; fall back to numbers
        pass
    a, b = _as_number(p), _as_number(g)
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))


def gradeable(gold: str | None) -> bool:
    """Whether the grader can read `gold` as mathematics: a number, or an expression math-verify parses.

    A gold answer it cannot read ("????", an unbalanced "\\frac{1}{") would make every rollout
    of its problem "incorrect" and every Monte Carlo value 0: such a problem is rejected at the source.
    """
    if gold is None or not str(gold).strip():
        return False
    text = str(gold).strip()
    if _as_number(text) is not None:
        return True
    try:
        parsed = _parsed(text)
    except Exception:  # math-verify can raise on exotic input: then it cannot grade against it
        return False
    return any(not isinstance(p, str) for p in parsed)  # math-verify appends the raw string to what it parsed


def grade(text: str, gold: str) -> tuple[str, str | None]:
    """(status, extracted answer): status is correct | incorrect | unparseable."""
    answer = extract_answer(text)
    if answer is None:
        return "unparseable", None
    return ("correct" if answers_match(answer, gold) else "incorrect"), answer
