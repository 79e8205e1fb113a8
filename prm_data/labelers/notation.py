"""Math notation in free text, rewritten into the grammar of `prm_data.labelers.arith`.

Real solutions mix prose, markdown and LaTeX. This module rewrites the spellings
whose meaning is unambiguous (`\\frac{a}{b}`, `\\cdot`, `×`, `÷`, `\\sqrt{}`,
`\\binom{n}{k}`, `1,000`, `20%`, `²`, `<<48/2=24>>` calculator annotations,
markdown bullets, headers and bold) and turns everything whose meaning it does not
know into a marker the parser refuses, so a claim that uses it is never checked:

- `…` for an ellipsis (`1 + 2 + \\cdots + 100`), never dropped;
- `§` for notation the parser does not read (`\\log`, `\\equiv`, `mod`, set braces,
  `\\sqrt[3]{}`, `|x|`, primes `r'(1)`): a side that holds one is not parsed;
- `<` for any order relation, which ends a side (`2^2 = 4 > 3` claims `2^2 = 4`).

An unknown LaTeX command is a `§`, not deleted: deleting `\\log_2` would leave
`8 = 3`. Prose words stay words; the claim extractor treats them as boundaries.

`numbers_in` / `word_numbers` list the numbers a text writes or names ("dozen" 12,
"week" 7), which the carried-value check counts as grounded.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sympy

# Markers the tokenizer knows (arith._TOKEN): an ellipsis, an unreadable notation, an order relation.
ELLIPSIS, UNKNOWN, RELATION = "…", "§", "<"

_CALC_ANNOTATION = re.compile(r"<<([^<>\n]*)>>")
_STEP_MARK = re.compile(r"(?im)^[ \t]*(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[ \t]*[:.)](?:[ \t]*\*\*)?")
_HEADER = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]+")
_LIST_MARK = re.compile(r"(?m)^[ \t]*(?:[-*+•]|\d{1,2}[.)])[ \t]+")
_BOLD = re.compile(r"\*\*|__")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|textit|mbox|operatorname|mathbf|emph)\s*\{([^{}]*)\}")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*(?=\{)")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_DIGITS = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")
_BINOM = re.compile(r"\\[dt]?binom\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_SUPERSCRIPT = {"²": "^2", "³": "^3", "¹": "^1", "⁴": "^4"}
_SPACING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg|displaystyle|limits)\b|\\[,;:! ]|\\q?quad\b|&")
_KNOWN_CMD = [
    (re.compile(r"\\(?:cdot|times|ast)(?![A-Za-z])|[×·⋅∙✕]"), "*"),
    (re.compile(r"\\div(?![A-Za-z])|÷"), "/"),
    (re.compile(r"\\(?:approx|simeq)(?![A-Za-z])|≈"), "≈"),
    (re.compile(r"\\(?:cdots|ldots|dots|dotsb|dotsc|dotsm)(?![A-Za-z])|\.{3}|…"), ELLIPSIS),
    (re.compile(r"\\(?:le|ge|leq|geq|lt|gt|neq|ne|leqslant|geqslant|implies|Rightarrow|rightarrow|to|iff|"
                r"Longrightarrow|Leftrightarrow)(?![A-Za-z])|[≤≥≠→⇒⟹<>]"), RELATION),
    (re.compile(r"\\(?:equiv|pmod|bmod|mod)(?![A-Za-z])|≡|\bmod\b|\bmodulo\b", re.I), UNKNOWN),
    (re.compile(r"\\pi(?![A-Za-z])"), "π"),
    (re.compile(r"\\(?:gcd|lcm|max|min)(?![A-Za-z])"), lambda m: " " + m.group()[1:]),
    (re.compile(r"\\[{}|]|\\sqrt\s*\[|[|′]|'(?![A-Za-z])"), UNKNOWN),  # set braces, n-th roots, |x|, primes
    (re.compile(r"\\\$"), " "),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\\"), "\n"),
    (re.compile(r"\\[()\[\]]|\$"), " "),
    (re.compile(r"[−–]"), "-"),
]
_POWER = re.compile(r"(?<=[\d)a-zA-Z])\s*\*\*\s*(?=[\d(a-zA-Z])")
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3})((?:,\d{3})+)(?!\d)")
_LATEX_THOUSANDS = re.compile(r"(?<=\d)\{,\}(?=\d{3})")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_TIMES_X = re.compile(r"(?<=\d)\s+[xX]\s+(?=\d)")
_UNKNOWN_CMD = re.compile(r"\\[A-Za-z]+")
_SQRT_SIGN = re.compile(r"√\s*(\d+(?:\.\d+)?|\([^()]*\))")
_UNIT_RATE = re.compile(r"(\d)\s*[A-Za-z]{2,}/[A-Za-z]{2,}(?=\s*[-+*/^])")

# A unit word between a number and an operator is dropped ("3 apples + 4 apples = 7"); these never are.
KEPT_WORDS = ("and|or|so|then|thus|hence|is|are|was|were|be|gives|give|get|gets|to|of|the|we|it|that|which|"
              "but|while|because|since|with|from|for|at|in|on|as|by|if|when|where|makes|make|equals|yields|"
              "plus|minus|times|over|left|now|than|not|no|yes|more|less|fewer|per|dozen|dozens|hundred|"
              "hundreds|thousand|thousands|million|millions|billion|half|twice|squared|cubed|percent|choose")
_UNIT_BEFORE_OP = re.compile(rf"(\d)\s+(?!(?:{KEPT_WORDS})\b)([A-Za-z]{{2,}})\.?\s*(?=[-+*]|/\s*[\d(])", re.I)
_UNIT_BEFORE_EQ = re.compile(rf"(\d)\s+(?!(?:{KEPT_WORDS})\b)([A-Za-z]{{2,}})\s*(?==)", re.I)


def _singular(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") else word


def _drop_matching_units(line: str) -> str:
    """`24 hours * 60 minutes = 1440 minutes`: a unit before `=` goes only when the chain ends in the same
    unit; another unit or none (`3 feet = 36 inches`, `3 hours = 3 * 60 = 180`) may be a conversion, so
    the word stays and ends the claim."""
    def repl(m: re.Match) -> str:
        after = re.match(r"\s*=\s*(?:[-\d.()/*+ ]+=\s*)*[-\d.()/*+ ]+([A-Za-z]{2,})", line[m.end():])
        if after is not None and _singular(after.group(1)) == _singular(m.group(2)):
            return m.group(1) + " "
        return m.group(0)
    return _UNIT_BEFORE_EQ.sub(repl, line)


def calculator_annotations(text: str) -> tuple[str, list[str]]:
    """GSM8K's `<<48/2=24>>`: removed from the text, returned as separate claims."""
    return _CALC_ANNOTATION.sub(" ", text), [m.group(1) for m in _CALC_ANNOTATION.finditer(text)]


def _nested(pattern: re.Pattern, repl: str, s: str) -> str:
    for _ in range(8):  # innermost first
        new = pattern.sub(repl, s)
        if new == s:
            return s
        s = new
    return s


def normalize_latex(s: str) -> str:
    """LaTeX commands into the grammar; unknown commands become the UNKNOWN marker."""
    s = _TEXT_CMD.sub(r" \1 ", s)
    s = _BOXED.sub("", s)
    s = _LATEX_THOUSANDS.sub("", s)
    s = _SPACING.sub(" ", s)
    for pattern, repl in _KNOWN_CMD:
        s = pattern.sub(repl, s)
    s = _FRAC_DIGITS.sub(r"((\1)/(\2))", s)
    s = _nested(_FRAC, r"((\1)/(\2))", s)
    s = _nested(_BINOM, r"binom((\1),(\2))", s)
    s = _nested(_SQRT, r"sqrt((\1))", s)
    s = _UNKNOWN_CMD.sub(UNKNOWN, s)
    return s.replace("{", "(").replace("}", ")")


@lru_cache(maxsize=8192)
def normalize_math(text: str) -> str:
    """Rewrite a step's text into the parser's grammar, line by line (see the module docstring)."""
    s = _STEP_MARK.sub(" ", text)
    s = _HEADER.sub("", s)
    s = _LIST_MARK.sub("", s)
    s = _POWER.sub("^", s)
    s = _BOLD.sub(" ", s)
    for sup, repl in _SUPERSCRIPT.items():
        s = s.replace(sup, repl)
    s = normalize_latex(s)
    s = _SQRT_SIGN.sub(r"sqrt(\1)", s).replace("√", UNKNOWN)
    s = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), s)
    s = _PERCENT.sub(r"(\1/100)", s)
    s = _TIMES_X.sub(" * ", s)
    s = _UNIT_RATE.sub(r"\1 ", s)
    lines = []
    for line in s.splitlines():
        line = _UNIT_BEFORE_OP.sub(r"\1 ", line)
        lines.append(_drop_matching_units(line))
    return "\n".join(_join_continued(lines))


def _join_continued(lines: list[str]) -> list[str]:
    """A displayed chain continued on the next line (`x = 3 + 4` / `= 7`) is one chain."""
    out: list[str] = []
    for line in lines:
        if out and line.lstrip().startswith(("=", "≈")):
            out[-1] = out[-1] + " " + line.strip()
        else:
            out.append(line)
    return out


# Numbers a word names or implies, so a solution may use them without the question writing them.
_NUMBER_WORDS: dict[str, tuple[int, ...]] = {
    "zero": (0,), "one": (1,), "two": (2,), "three": (3,), "four": (4,), "five": (5,), "six": (6,),
    "seven": (7,), "eight": (8,), "nine": (9,), "ten": (10,), "eleven": (11,), "twelve": (12,),
    "thirteen": (13,), "fourteen": (14,), "fifteen": (15,), "sixteen": (16,), "seventeen": (17,),
    "eighteen": (18,), "nineteen": (19,), "twenty": (20,), "thirty": (30,), "forty": (40,),
    "fifty": (50,), "hundred": (100,), "thousand": (1000,), "dozen": (12,), "dozens": (12,),
    "twice": (2,), "double": (2,), "half": (2,), "triple": (3,), "thrice": (3,), "quarter": (4,),
    "week": (7,), "weeks": (7,), "weekly": (7,), "hour": (60,), "hours": (60, 24), "minute": (60,),
    "minutes": (60,), "day": (24,), "days": (24, 7), "month": (12, 30), "months": (12,),
    "year": (12, 365, 52), "years": (12, 365), "percent": (100,), "cents": (100,), "pair": (2,),
    "pairs": (2,),
}


def word_numbers(text: str) -> set[sympy.Rational]:
    """Numbers named or implied by words in `text` ("dozen" 12, "week" 7, "twice" 2, ...)."""
    out: set[sympy.Rational] = set()
    for w in re.findall(r"[A-Za-z]+", text.lower()):
        out.update(sympy.Rational(n) for n in _NUMBER_WORDS.get(w, ()))
    return out


def numbers_in(text: str) -> set[sympy.Rational]:
    """Every number written in `text` (digits, after normalization) or named by a common word."""
    out = word_numbers(text)
    for m in re.finditer(r"\d+(?:\.\d+)?", normalize_math(text)):
        out.add(sympy.Rational(m.group()))
    return out
