"""Final-answer extraction, equivalence and gradeability, never by string equality.

Extraction looks where real model and human solutions put the answer, in order:
the last `\\boxed{...}` (balanced braces; a box left open means a truncated output,
so no answer), a GSM8K `#### 42` line, then math-verify's anchored extraction
(`LatexExtractionConfig` / `ExprExtractionConfig` without anchorless matching:
"final answer is ... I hope", "The answer is", "Answer:", "**Final answer: 150**"),
its `StringExtractionConfig` for word answers (yes / no, a choice letter), and last
math-verify's anchorless extraction on the last line only (the last displayed
expression or sentence: "Therefore, $x = 3$.", "So Kim has **19** stamps left.").
Markdown bold and `Step k:` markers are removed first. An output with none of these
has no answer: `unparseable` is a status, not a guess.

Equivalence is decided by math-verify (LaTeX, fractions, 0.5 vs 1/2, units stripped)
with a numeric fallback; yes/no and multiple-choice golds are compared as words
(`"No."` is `"No"`, `"on"` and `"sey"` are nothing), and a prose gold is compared by
its single math span (`"3"` matches `"3 is the only possible value"`).

`ungradeable_reason` says why a gold answer cannot grade a rollout by its final
answer alone — prose ("No such values"), yes/no (a guess is right half the time),
several forms ("X, or equivalently Y") or nothing math-verify can read. Such a
problem needs a judge or a rubric: `grade` returns the status `ungradeable`, never
`incorrect`, and source validation rejects the problem with that reason.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

_HASHES = re.compile(r"####\s*(.+?)\s*$", re.M)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_ANSWER_WORD = re.compile(r"answer\s+is\s*:?\s*\(?([A-Za-z]+)\)?\s*(?:[.!]|$)", re.I)
_MARKDOWN = re.compile(r"\*\*|__")
_STEP_MARK = re.compile(r"(?im)^[ \t]*(?:\*\*)?step[ \t]*\d+[ \t]*[:.)]")
_ANCHORED = (LatexExtractionConfig(try_extract_without_anchor=False, boxed_match_priority=0),
             ExprExtractionConfig(try_extract_without_anchor=False))
_ANYWHERE = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_CHOICES = ("A", "B", "C", "D", "E")
_WORDS = (StringExtractionConfig(strings=("yes", "no", "Yes", "No", "YES", "NO", *_CHOICES),
                                 try_extract_without_anchor=False),)
YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
_CHOICE_GOLD = re.compile(r"^\(?\s*([A-E])\s*\)?\.?$")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}")
# Words that make a gold a sentence rather than a value ("3 is the only possible value").
_PROSE_WORDS = re.compile(r"\b(?:is|are|was|were|be|only|no|none|not|such|every|all|any|there|when|if|which|that|"
                          r"exists?|possible|impossible|wins?|the|an|for|than|never|always|infinitely|many)\b", re.I)
_MULTI_FORM = re.compile(r"\bor\b|\bequivalently\b|\bi\.e\.|\bthat is\b", re.I)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _last_boxed(text: str) -> tuple[str | None, bool]:
    """(content of the last balanced \\boxed{}, whether a box opened after it is left unclosed)."""
    found, open_after = None, False
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        i, depth = m.end(), 1
        while i < len(text) and depth:
            depth += (text[i] == "{") - (text[i] == "}")
            i += 1
        if depth == 0:
            found, open_after = text[m.end():i - 1].strip(), False
        else:
            open_after = True
    return found, open_after


def _extracted_string(found: list) -> str | None:
    """math-verify returns [parsed..., matched string]; the matched string is the answer as written.
    A match with unbalanced brackets (`1)` of "(1, 2) and (2, 1)") is a fragment: no answer."""
    strings = [f for f in found if isinstance(f, str) and f.strip()]
    answer = strings[-1].strip().rstrip(".") if strings else (str(found[0]) if found else None)
    if answer is not None and any(answer.count(a) != answer.count(b) for a, b in ("()", "[]", "{}")):
        return None
    return answer


class _UnboundedOnPurpose(logging.Filter):
    """Hide math-verify's per-call warning that its timeout is off: off is our choice off the main thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_UnboundedOnPurpose())


def _timeout() -> int | None:
    """math-verify bounds parsing with SIGALRM, which only the main thread may use; elsewhere (a Prefect
    task runner's threads) it would raise and every answer would read as missing, so there it runs unbounded."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def _quiet_parse(text: str, config) -> list:
    try:
        return parse(text, list(config), parsing_timeout=_timeout())
    except Exception:  # math-verify can raise on exotic input: then it found nothing
        return []


def extract_answer(text: str) -> str | None:
    """The final answer stated in `text`, or None when it states none."""
    if not text or not text.strip():
        return None
    boxed, truncated = _last_boxed(text)
    if truncated:
        return None
    if boxed:
        return boxed
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    clean = _STEP_MARK.sub(" ", _MARKDOWN.sub("", text))
    answer = _extracted_string(_quiet_parse(clean, _ANCHORED))
    if answer:
        return _whole_expression(answer, clean)
    answer = _extracted_string(_quiet_parse(clean, _WORDS))
    if answer:
        return answer
    word = _ANSWER_WORD.findall(clean)
    if word and (_yes_no(word[-1]) or _choice(word[-1])):
        return word[-1]
    return _closing_value(text)


def _closing_value(text: str) -> str | None:
    """The rightmost value of the last sentence that holds one ("This is 9*10/2 = 45.", "Therefore,
    $x = 3$.", "So Kim has **19** stamps left."; a last line like "I hope this helps!" is passed over), read by
    math-verify, or a lone choice "(B)". A line that is still a numbered step ("Step 4: ..., so
    12 / 4 = 3.") closes nothing: the output stated no answer."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and not re.search(r"[\d\\$]", lines[-1]) and not _CONCLUDES.match(lines[-1]):
        lines = lines[:-1]  # a closing "I hope this helps!"; "So there is no solution." is a (prose) answer
    for line in reversed(lines[-1:]):
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z\\$])", _MARKDOWN.sub("", line).strip())
        for sentence in reversed(sentences):
            if not re.search(r"[\d\\$]|\([A-E]\)", sentence):
                continue  # no value here: look one sentence back
            if _STEP_MARK.match(line):
                return None
            choice = re.fullmatch(r".*?\(([A-E])\)[^()\d]*", sentence)
            if choice and not re.search(r"\d", sentence):
                return f"({choice.group(1)})"
            answer = _extracted_string(_quiet_parse(sentence, _ANYWHERE))
            return _whole_expression(answer, sentence) if answer else None
    return None


_CONCLUDES = re.compile(r"\W*(?:so|thus|hence|therefore|consequently|the answer|answer|final|in conclusion)\b", re.I)
_CONTINUES = r"[A-Za-z0-9^()+\-*/{}\\_.:]*[A-Za-z0-9^()+\-*/{}\\_]"


def _whole_expression(answer: str, text: str) -> str:
    """math-verify's plain-expression extraction stops at the first letter (`5` of `5x(x+1)^2`): when the
    found answer runs on without a space, the whole run is the answer if math-verify parses it as LaTeX."""
    at = [m.end() for m in re.finditer(re.escape(answer), text)]
    run = re.match(_CONTINUES, text[at[-1]:]) if at else None  # math-verify takes the rightmost match
    if run:
        longer = answer + run.group()
        parsed = _quiet_parse(f"${longer}$", _ANCHORED[:1] + (LatexExtractionConfig(),))
        if any(not isinstance(p, str) for p in parsed):
            return longer
    return answer


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
        out = parse(f"${expr}$", parsing_timeout=_timeout())
        if out:
            return out
    return parse(expr, parsing_timeout=_timeout())


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


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z]+", " ", _TEXT_CMD.sub(r"\1", text).lower()).split())


def _yes_no(text: str) -> str | None:
    words = _words(text).split()
    return YES_NO.get(words[0]) if words else None


def _choice(text: str) -> str | None:
    m = _CHOICE_GOLD.match(_TEXT_CMD.sub(r"\1", text).strip().strip("$"))
    return m.group(1).upper() if m else None


def _math_match(p: str, g: str) -> bool:
    try:
        if verify(_parsed(g), _parsed(p), timeout_seconds=_timeout()):
            return True
    except Exception:  # math-verify can raise on exotic input; fall back to numbers
        pass
    a, b = _as_number(p), _as_number(g)
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _math_spans(gold: str) -> list[str]:
    """The numbers and formulas of a prose gold, in order."""
    spans = re.findall(r"\$([^$]+)\$|\\\((.+?)\\\)", gold)
    if spans:
        return [a or b for a, b in spans]
    return re.findall(r"-?\d+(?:\.\d+)?(?:/\d+)?", gold)


def answers_match(predicted: str | None, gold: str | None) -> bool:
    """True when `predicted` is the same answer as `gold`: words for yes/no and choice letters, the
    single math span of a prose gold, any one form of a multi-form gold, else mathematically."""
    if predicted is None or gold is None or not str(predicted).strip() or not str(gold).strip():
        return False
    p, g = str(predicted).strip(), str(gold).strip()
    if _yes_no(g) is not None and len(_words(g).split()) == 1:
        return _yes_no(p) == _yes_no(g)
    if _choice(g) is not None:
        return _choice(p) == _choice(g)
    reason = ungradeable_reason(g)
    if reason is not None and reason.startswith("several forms"):
        return any(answers_match(p, form) for form in _forms(g))
    if reason is not None and reason.startswith("prose"):
        spans = _math_spans(g)
        return len(spans) == 1 and _math_match(p, spans[0])
    if _words(p) and not re.search(r"[\d\\]", p) and _WORD.search(p):
        return False  # prose ("sey", "none") is not a product of letters
    return _math_match(p, g)


def _forms(gold: str) -> list[str]:
    parts = re.split(r",?\s*(?:\bor equivalently\b|\bequivalently\b|\bi\.e\.|\bthat is\b|\bor\b)\s*", gold)
    return [p.strip(" ,.") for p in parts if p.strip(" ,.")]


def ungradeable_reason(gold: str | None) -> str | None:
    """Why `gold` cannot grade a final answer by itself (None when it can): empty, yes/no, several forms,
    prose, or nothing math-verify reads. Such problems need a judge or a rubric."""
    if gold is None or not str(gold).strip():
        return "empty gold answer"
    text = str(gold).strip()
    if _choice(text) is not None or _as_number(text) is not None:
        return None
    if _yes_no(text) is not None and len(_words(text).split()) <= 2:
        return "yes/no answer: a guess is right half the time; grade the argument with a judge or rubric"
    plain = _TEXT_CMD.sub(r" \1 ", text)
    if _MULTI_FORM.search(plain):
        return "several forms (\"X or Y\", \"equivalently\"): which one a rollout must give is unclear; needs a judge"
    if _PROSE_WORDS.search(plain) or (not re.search(r"[\d\\^=]", plain) and len(_WORD.findall(plain)) >= 1
                                      and len(plain.split()) >= 2):
        return "prose answer: a sentence is not a value math-verify can compare; needs a judge or rubric"
    try:
        parsed = _parsed(text)
    except Exception:  # math-verify can raise on exotic input: then it cannot grade against it
        return "math-verify reads no number or expression in it"
    if not any(not isinstance(x, str) for x in parsed):  # math-verify appends the raw string to what it parsed
        return "math-verify reads no number or expression in it"
    return None


def gradeable(gold: str | None) -> bool:
    """Whether a rollout can be graded against `gold` by its final answer alone (`ungradeable_reason` is None).

    A gold answer the grader cannot read ("????", an unbalanced "\\frac{1}{") or a prose, yes/no or
    multi-form gold would make every rollout of its problem "incorrect" and every Monte Carlo value 0:
    such a problem is rejected at the source, with the reason.
    """
    return ungradeable_reason(gold) is None


def grade(text: str, gold: str) -> tuple[str, str | None]:
    """(status, extracted answer): status is correct | incorrect | unparseable | ungradeable."""
    answer = extract_answer(text)
    if not gradeable(gold):
        return "ungradeable", answer
    if answer is None:
        return "unparseable", None
    return ("correct" if answers_match(answer, gold) else "incorrect"), answer
