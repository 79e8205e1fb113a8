"""Claims inside LaTeX math (`$...$`, `$$...$$`, `\\[...\\]`, `\\(...\\)`), read by two parsers that must agree.

A LaTeX formula is split at its top-level `=` / `\\approx` into sides. Each side is
parsed by this project's safe parser (`prm_data.labelers.arith`, after
`notation.normalize_latex`) and, when its value is a number, also by
latex2sympy2_extended (the LaTeX parser math-verify uses). A numeric side counts
only when both parsers read the same number: latex2sympy alone reads `3(7) - 4`
as 6, `2bcd8` as a product of letters and `r'(1)` as `r(1)`; this parser alone
could miss LaTeX it has never seen. Where they disagree the side is dropped and
the chain is broken there, so the claim is not checked.

A `$` that is a currency sign (`$1,200 + $300`) is not a formula: a `$...$` pair
counts as math only when its content holds a LaTeX command, `^`, `{` or a letter,
and no English word.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import sympy

from prm_data.labelers.arith import ArithError, Chain, Side, side_of, tokenize
from prm_data.labelers.notation import normalize_math

_MATH = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$([^$]+?)(?<!\\)\$", re.S)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_LATEX_HINT = re.compile(r"\\[A-Za-z]|[\^{}_]|[A-Za-z]")
MAX_LATEX_CHARS = 300


def _is_formula(content: str, displayed: bool) -> bool:
    stripped = re.sub(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}|\\[A-Za-z]+", " ", content)
    if _WORD.search(stripped):
        return False
    return displayed or bool(_LATEX_HINT.search(content))


def split_math(text: str) -> list[tuple[bool, str]]:
    """`text` as (is_formula, piece) in order; formulas without their delimiters."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _MATH.finditer(text):
        content = next(g for g in m.groups() if g is not None)
        displayed = m.group(4) is None
        if not _is_formula(content, displayed):
            continue
        out.append((False, text[pos:m.start()]))
        out.append((True, content.strip().rstrip(".,;:").strip()))  # "= \\frac{5}{6}.\\]" ends a sentence
        pos = m.end()
    out.append((False, text[pos:]))
    return [(f, p) for f, p in out if p.strip()]


def _top_level_sides(formula: str) -> list[tuple[str, bool]]:
    """(side, joined to the next by ≈) at depth-0 `=` and `\\approx`; `\\le`-type relations end the formula."""
    sides, depth, start, i = [], 0, 0, 0
    while i < len(formula):
        c = formula[i]
        if c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
        elif depth == 0 and c == "=":
            sides.append((formula[start:i], False))
            start = i + 1
        elif depth == 0 and formula.startswith("\\approx", i):
            sides.append((formula[start:i], True))
            start = i = i + len("\\approx")
            continue
        i += 1
    sides.append((formula[start:], False))
    return sides


@lru_cache(maxsize=8192)
def _latex2sympy_number(latex: str) -> sympy.Expr | None:
    """latex2sympy's reading of a numeric side, or None when it reads no number."""
    from latex2sympy2_extended import latex2sympy  # imported late: it loads an ANTLR parser

    if len(latex) > MAX_LATEX_CHARS:
        return None
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
    try:
        value = latex2sympy(latex)
        value = value.doit() if hasattr(value, "doit") else value
    except Exception:  # any failure of the second parser means "no second opinion"
        return None
    return value if isinstance(value, sympy.Expr) and value.is_number else None


def _agree(mine: sympy.Expr, theirs: sympy.Expr | None) -> bool:
    if theirs is None:
        return False
    try:
        return bool(abs(sympy.N(mine - theirs, 30)) <= sympy.Float("1e-20") * max(1, abs(sympy.N(mine, 30))))
    except (TypeError, ValueError):
        return False


_SEPARATOR = re.compile(r"\\(?:le|ge|leq|geq|lt|gt|neq|ne|implies|Rightarrow|Longrightarrow|iff|quad|qquad|"
                        r"text\s*\{[^{}]*[A-Za-z]{2,}[^{}]*\})(?![A-Za-z])|[<>≤≥≠;]|\\\\")


def _clauses(formula: str) -> list[str]:
    """A formula cut at order relations, `\\quad`, worded `\\text{}`, `;`, line breaks and top-level commas:
    `4^2 = 16 > 10` claims `4^2 = 16`; each piece is an operand boundary, never a cut inside an expression."""
    pieces, depth, start = [], 0, 0
    for i, c in enumerate(formula):
        depth += (c in "{(") - (c in "})")
        if c == "," and depth == 0:
            pieces.append(formula[start:i])
            start = i + 1
    pieces.append(formula[start:])
    return [p for piece in pieces for p in _SEPARATOR.split(piece) if p.strip()]


def formula_chains(formula: str) -> tuple[list[Chain], list[dict]]:
    """Chains of one formula, and the sides dropped because the two parsers disagreed."""
    chains: list[Chain] = []
    disputed: list[dict] = []
    for clause in _clauses(formula):
        found, lost = _clause_chains(clause)
        chains.extend(found)
        disputed.extend(lost)
    return chains, disputed


def _clause_chains(formula: str) -> tuple[list[Chain], list[dict]]:
    chains: list[Chain] = []
    disputed: list[dict] = []
    sides: list[Side] = []
    approx: list[bool] = []
    joins: list[bool] = []
    for raw, joined in _top_level_sides(formula):
        side = None
        lines = normalize_math(raw).splitlines()
        if len(lines) == 1:
            try:
                side = side_of(tokenize(lines[0]))
            except (ArithError, RecursionError, TypeError, ValueError, ZeroDivisionError, OverflowError):
                side = None
        if side is not None and side.value.is_number:
            theirs = _latex2sympy_number(raw.strip())
            if not _agree(side.value, theirs):
                disputed.append({"side": raw.strip(), "this_parser": str(side.value),
                                 "latex2sympy": None if theirs is None else str(theirs)})
                side = None
        if side is None:
            if len(sides) >= 2:
                chains.append(Chain(tuple(sides), tuple(approx)))
            sides, approx = [], []
        else:
            if sides:
                approx.append(joins[-1])
            sides.append(side)
        joins.append(joined)
    if len(sides) >= 2:
        chains.append(Chain(tuple(sides), tuple(approx)))
    return chains, disputed
