"""Arithmetic claims in free text, parsed into sympy without ever calling `eval`.

Model text is untrusted: `sympy.sympify`/`parse_expr` compile the text into
Python and evaluate it, so they are not used here. Instead a small tokenizer
and recursive-descent parser (numbers, single-letter variables, + - * / ^,
parentheses, implicit multiplication like `2x`) builds sympy objects directly
from a whitelisted token stream. Numbers become exact `Rational`s, so
`0.1 + 0.2 = 0.3` is true and `10 / 4 = 2.5` exact. Exponents and magnitudes
are bounded so a hostile `9^9^9^9` cannot hang the verifier.

`normalize_math` turns the common spellings into that grammar: `3 x 4`, `3 × 4`,
`\\frac{1}{2} \\cdot 4`, `\\times`, `\\div`, `÷`, `−`, `1,000`, `$5`, `20%`,
`\\approx`, `\\boxed{}` and `Step k:` markers. `extract_chains` finds every
`a = b (= c ...)` chain and returns its sides as sympy expressions, trimming
prose that leaks into the outer sides ("so a total of 3 + 4 = 7 apples").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy

MAX_EXPONENT = 64
MAX_MAGNITUDE = sympy.Integer(10) ** 60
MAX_TOKENS = 200


class ArithError(ValueError):
    """The text is not an expression of the whitelisted grammar (or is too large)."""


# ----------------------------------------------------------------- normalizing
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\}")
_STEP_MARK = re.compile(r"(?im)^[ \t]*(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[ \t]*[:.)]")
_REPLACEMENTS = [
    (re.compile(r"\\(?:cdot|times|ast)\b|[×·⋅∙✕]"), "*"),
    (re.compile(r"\\div\b|÷"), "/"),
    (re.compile(r"\\approx\b|≈|\\simeq\b"), "≈"),
    (re.compile(r"\\left\b|\\right\b|\\[,;:! ]|\\quad\b|\\qquad\b"), " "),
    (re.compile(r"[−–]"), "-"),
    (re.compile(r"\*\*"), "^"),
    (re.compile(r"\\[()\[\]]|\$"), " "),
]
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\\%|%)")
_TIMES_X = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])")
# A unit between a number and an operator ("3 apples + 4 apples = 7"), never a connective.
_CONNECTIVES = ("and|or|so|then|thus|hence|is|are|was|were|be|gives|give|get|gets|to|of|the|we|it|"
                "that|which|but|while|because|since|with|from|for|at|in|on|as|by|if|when|where|"
                "makes|make|equals|yields|plus|minus|times|over|left|now|than|not|no|yes")
_UNIT_WORD = re.compile(rf"(\d)\s+(?!(?:{_CONNECTIVES})\b)[A-Za-z]{{2,}}\.?\s*(?=[-+*/^=≈])", re.I)
_OTHER_CMD = re.compile(r"\\[A-Za-z]+")


def normalize_math(text: str) -> str:
    """Rewrite common math spellings into the parser's grammar (one line per input line)."""
    s = _STEP_MARK.sub(" ", text)
    s = _TEXT_CMD.sub(" ", s)
    for _ in range(8):  # nested fractions, innermost first
        new = _FRAC.sub(r"((\1)/(\2))", s)
        if new == s:
            break
        s = new
    for pattern, repl in _REPLACEMENTS:
        s = pattern.sub(repl, s)
    s = _THOUSANDS.sub("", s)
    s = _PERCENT.sub(r"(\1/100)", s)
    s = _TIMES_X.sub("*", s)
    s = _UNIT_WORD.sub(r"\1 ", s)
    s = _OTHER_CMD.sub(" ", s)
    return s.replace("{", "(").replace("}", ")")


# ------------------------------------------------------------------ tokenizing
@dataclass(frozen=True)
class Token:
    kind: str  # num | var | op | lpar | rpar | eq | approx | other
    text: str
    adjacent: bool  # no whitespace between this token and the previous one


_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)|(?P<word>[A-Za-z]+)|(?P<op>[-+*/^])|(?P<lpar>\()|(?P<rpar>\))"
    r"|(?P<eq>=)|(?P<approx>≈)|(?P<space>\s+)|(?P<other>.)", re.S)


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    adjacent = False
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            adjacent = False
            continue
        value = m.group()
        if kind == "word":
            kind = "var" if len(value) == 1 else "other"
        out.append(Token(kind, value, adjacent))
        adjacent = True
    return out


# --------------------------------------------------------------------- parsing
class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/'|implicit) unary)* ;
    unary := ('-'|'+') unary | power ; power := atom ('^' unary)? ; atom := num | var | '(' expr ')'"""

    def __init__(self, tokens: list[Token]):
        if len(tokens) > MAX_TOKENS:
            raise ArithError("expression too long")
        self.toks = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise ArithError("unexpected end of expression")
        self.i += 1
        return tok

    def parse(self) -> sympy.Expr:
        if not self.toks:
            raise ArithError("empty expression")
        value = self.expr()
        if self.peek() is not None:
            raise ArithError(f"unexpected {self.peek().text!r}")
        return value

    def expr(self) -> sympy.Expr:
        value = self.term()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text in "+-":
            self.take()
            rhs = self.term()
            value = _bounded(value + rhs if tok.text == "+" else value - rhs)
        return value

    def term(self) -> sympy.Expr:
        value = self.unary()
        while (tok := self.peek()) is not None:
            if tok.kind == "op" and tok.text in "*/":
                self.take()
                rhs = self.unary()
                if tok.text == "/":
                    if rhs == 0:
                        raise ArithError("division by zero")
                    value = _bounded(value / rhs)
                else:
                    value = _bounded(value * rhs)
            elif tok.adjacent and tok.kind in ("var", "lpar") or (
                    tok.adjacent and tok.kind == "num" and self.toks[self.i - 1].kind == "rpar"):
                value = _bounded(value * self.unary())  # implicit: 2x, 3(4+1), (2)(3)
            else:
                break
        return value

    def unary(self) -> sympy.Expr:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text in "+-":
            self.take()
            value = self.unary()
            return -value if tok.text == "-" else value
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == "^":
            self.take()
            exponent = self.unary()
            if not exponent.is_number or abs(exponent) > MAX_EXPONENT:
                raise ArithError("exponent too large or not a number")
            if base == 0 and exponent.is_negative:
                raise ArithError("division by zero")
            return _bounded(base ** exponent)
        return base

    def atom(self) -> sympy.Expr:
        tok = self.take()
        if tok.kind == "num":
            return sympy.Rational(tok.text)
        if tok.kind == "var":
            return sympy.Symbol(tok.text)
        if tok.kind == "lpar":
            value = self.expr()
            if self.take().kind != "rpar":
                raise ArithError("unbalanced parenthesis")
            return value
        raise ArithError(f"unexpected {tok.text!r}")


def _bounded(value: sympy.Expr) -> sympy.Expr:
    if value.is_number and value.is_finite is not False:
        if value.is_real and abs(value) > MAX_MAGNITUDE:
            raise ArithError("number too large")
    elif value.is_number:
        raise ArithError("not a finite number")
    return value


def parse_tokens(tokens: list[Token]) -> sympy.Expr:
    return _Parser(tokens).parse()


def parse_expression(text: str) -> sympy.Expr:
    """Parse one expression (after `normalize_math`); raises ArithError."""
    tokens = tokenize(normalize_math(text))
    if any(t.kind in ("other", "eq", "approx") for t in tokens):
        raise ArithError("not a single expression")
    return parse_tokens(tokens)


# -------------------------------------------------------------------- chains
@dataclass(frozen=True)
class Side:
    text: str
    value: sympy.Expr
    is_bare: bool  # a single number or variable, no operation
    numbers: tuple[sympy.Rational, ...]  # every number literal written on this side


@dataclass(frozen=True)
class Chain:
    """`a = b = c`: sides in order; `approx[i]` says whether sides i and i+1 are joined by ≈."""

    sides: tuple[Side, ...]
    approx: tuple[bool, ...]

    @property
    def text(self) -> str:
        out = self.sides[0].text
        for a, s in zip(self.approx, self.sides[1:]):
            out += (" ≈ " if a else " = ") + s.text
        return out


def _side(tokens: list[Token]) -> Side:
    value = parse_tokens(tokens)
    text = "".join(f" {t.text} " if t.kind == "op" and t.text in "+-" else t.text for t in tokens)
    text = re.sub(r"\s+", " ", text).strip()
    bare = len([t for t in tokens if t.kind in ("num", "var")]) == 1 and not any(
        t.kind == "op" and t.text in "+*/^" for t in tokens)
    nums = tuple(sympy.Rational(t.text) for t in tokens if t.kind == "num")
    return Side(text, value, bare, nums)


def _trim_left(tokens: list[Token]) -> Side | None:
    """The longest parseable suffix that does not start with a binary operator."""
    for start in range(len(tokens)):
        head = tokens[start]
        if head.kind == "rpar" or (head.kind == "op" and head.text in "*/^+"):
            continue
        if start > 0 and tokens[start - 1].kind == "op" and tokens[start - 1].text in "*/^":
            continue  # "days * 5 = 15": the left operand was prose, the claim is cut
        try:
            return _side(tokens[start:])
        except ArithError:
            continue
    return None


def _trim_right(tokens: list[Token]) -> Side | None:
    """The longest parseable prefix that is not followed by an operator."""
    for end in range(len(tokens), 0, -1):
        if end < len(tokens) and tokens[end].kind == "op" and tokens[end].text in "*/^+-":
            continue
        try:
            return _side(tokens[:end])
        except ArithError:
            continue
    return None


def extract_chains(text: str) -> list[Chain]:
    """Every equality chain in `text`, in order, with unparseable inner sides splitting it."""
    chains: list[Chain] = []
    for line in normalize_math(text).splitlines():
        tokens = tokenize(line)
        runs: list[list[Token]] = [[]]
        for tok in tokens:
            if tok.kind == "other":
                runs.append([])
            else:
                runs[-1].append(tok)
        for run in runs:
            chains.extend(_chains_in_run(run))
    return chains


def _chains_in_run(run: list[Token]) -> list[Chain]:
    if not any(t.kind in ("eq", "approx") for t in run):
        return []
    parts: list[list[Token]] = [[]]
    joins: list[bool] = []
    for tok in run:
        if tok.kind in ("eq", "approx"):
            parts.append([])
            joins.append(tok.kind == "approx")
        else:
            parts[-1].append(tok)
    out: list[Chain] = []
    sides: list[Side] = []
    approx: list[bool] = []
    last = len(parts) - 1
    for i, toks in enumerate(parts):
        side = None
        if toks:
            if i == 0:
                side = _trim_left(toks)
            elif i == last:
                side = _trim_right(toks)
            else:
                try:
                    side = _side(toks)
                except ArithError:
                    side = None
        if side is None:  # break the chain here
            if len(sides) >= 2:
                out.append(Chain(tuple(sides), tuple(approx)))
            sides, approx = [], []
            continue
        if sides:
            approx.append(joins[i - 1])
        sides.append(side)
    if len(sides) >= 2:
        out.append(Chain(tuple(sides), tuple(approx)))
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
