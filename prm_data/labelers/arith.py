"""Arithmetic claims in free text, parsed into sympy without ever calling `eval`.

Model text is untrusted: `sympy.sympify`/`parse_expr` compile the text into
Python and evaluate it, so they are not used here. A tokenizer and a
recursive-descent parser build sympy objects directly from a whitelisted token
stream: numbers (exact `Rational`s, so `0.1 + 0.2 = 0.3` holds), single-letter
and subscripted variables (`x`, `x_6`, `a_(n+1)` are opaque symbols), `π`,
`+ - * / ^`, postfix `!`, `n choose k`, `sqrt() gcd() lcm() max() min() binom()`,
parentheses and adjacent implicit products (`2x`, `3(7)`, `(2)(3)`). Exponents
and magnitudes are bounded so a hostile `9^9^9^9` cannot hang the verifier.

Precision before coverage: a side is parsed whole or not at all. The parser
refuses (and the claim is not checked) a letter followed by `(` (`f(z)`, `q(x)`,
`5x(x+1)`: function or product?), two operands side by side with only a space
between (`x_1 x_2`, `10^k d`), digit patterns with letter digits (`2bcd8`,
`3rd`), ellipses, `mod`, primes and any notation `prm_data.labelers.notation`
marks unknown. `extract_chains` splits a line at prose words, punctuation and
order relations; each `a = b (= c ...)` run becomes a `Chain` of the sides that
parse, and a side that does not parse breaks the chain there — it is never
trimmed to a suffix that parses (`10^k*d+r = ...` is not read as `r = ...`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import sympy

from prm_data.labelers.notation import normalize_math

MAX_EXPONENT = 1000
MAX_DIGITS = 60  # no number above 10^60
MAX_FACTORIAL = 50
MAX_TOKENS = 200
FUNCTIONS = ("sqrt", "gcd", "lcm", "max", "min", "binom")
# Words that act on the number next to them: a side touching one is not parsed ("twice 3 + 4 = 14").
OPERATOR_WORDS = frozenset({
    "twice", "thrice", "half", "double", "triple", "times", "plus", "minus", "over", "squared", "cubed",
    "dozen", "dozens", "hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion",
    "percent", "than", "by", "per", "factorial", "root"})
PROSE_LETTERS = frozenset({"a", "A", "I"})


class ArithError(ValueError):
    """The text is not an expression of the whitelisted grammar (or is too large)."""


# ------------------------------------------------------------------ tokenizing
@dataclass(frozen=True)
class Token:
    kind: str  # num var const func choose op fact lpar rpar comma eq approx | word punct rel | poison
    text: str
    adjacent: bool  # no whitespace between this token and the previous one


_TOKEN = re.compile(
    r"(?P<sub>[A-Za-z]_(?:\d+|[A-Za-z]|\([^()\s]*\)))(?![A-Za-z0-9])"
    r"|(?P<alnum>[A-Za-z0-9]+(?:\.\d+)?(?:'[A-Za-z]+)?)"
    r"|(?P<op>[-+*/^])|(?P<fact>!(?!=))|(?P<lpar>\()|(?P<rpar>\))|(?P<comma>,)|(?P<eq>=)|(?P<approx>≈)"
    r"|(?P<rel>!=|<)|(?P<const>π)|(?P<punct>[:;?.\"“”])|(?P<space>\s+)|(?P<poison>.)", re.S)
_NUM = re.compile(r"\d+(?:\.\d+)?")
_NUM_VAR = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z])")
_NUM_FUNC = re.compile(r"(\d+(?:\.\d+)?)(sqrt|binom)")


def tokenize(text: str) -> list[Token]:
    """Tokens of one normalized line."""
    out: list[Token] = []
    adjacent = False
    for m in _TOKEN.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "space":
            adjacent = False
            continue
        if kind == "alnum":
            out.extend(_alnum(value, adjacent))
        else:
            out.append(Token("var" if kind == "sub" else kind, value, adjacent))
        adjacent = True
    return out


def _alnum(value: str, adjacent: bool) -> list[Token]:
    if _NUM.fullmatch(value):
        return [Token("num", value, adjacent)]
    if m := _NUM_VAR.fullmatch(value):  # 2x
        return [Token("num", m.group(1), adjacent), Token("var", m.group(2), True)]
    if m := _NUM_FUNC.fullmatch(value):  # 2sqrt(5)
        return [Token("num", m.group(1), adjacent), Token("func", m.group(2), True)]
    if value.isalpha() or "'" in value:
        if len(value) == 1:
            return [Token("var", value, adjacent)]
        low = value.lower()
        if low in FUNCTIONS:
            return [Token("func", low, adjacent)]
        if low == "choose":
            return [Token("choose", low, adjacent)]
        return [Token("word", value, adjacent)]
    return [Token("poison", value, adjacent)]  # 2bcd8, 3rd, x2: digit patterns, ordinals


# --------------------------------------------------------------------- parsing
_OPERAND_START = ("num", "var", "const", "func", "lpar")


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/'|'choose'|implicit) unary)* ;
    unary := ('-'|'+') unary | power ; power := postfix ('^' unary)? ; postfix := atom '!'* ;
    atom := num | var | π | func '(' expr (',' expr)* ')' | '(' expr ')'"""

    def __init__(self, tokens: list[Token]):
        if len(tokens) > MAX_TOKENS:
            raise ArithError("expression too long")
        bad = next((t for t in tokens if t.kind in ("poison", "word", "punct", "rel")), None)
        if bad is not None:
            raise ArithError(f"unreadable {bad.text!r}")
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
            elif tok.kind == "choose":
                self.take()
                value = _binomial(value, self.unary())
            elif tok.kind in _OPERAND_START:
                if not tok.adjacent:
                    raise ArithError("two operands side by side: product or two claims?")
                if tok.kind == "num" and self.toks[self.i - 1].kind != "rpar":
                    raise ArithError("a number right after an operand")
                value = _bounded(value * self.unary())  # 2x, 3(4+1), (2)(3), 2sqrt(5)
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
        base = self.postfix()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == "^":
            self.take()
            return _power(base, self.unary())
        return base

    def postfix(self) -> sympy.Expr:
        value = self.atom()
        while (tok := self.peek()) is not None and tok.kind == "fact":
            self.take()
            if not (value.is_integer and value.is_number and 0 <= value <= MAX_FACTORIAL):
                raise ArithError("factorial of a non-integer or of a large number")
            value = sympy.factorial(value)
        return value

    def atom(self) -> sympy.Expr:
        tok = self.take()
        nxt = self.peek()
        if tok.kind == "num":
            return sympy.Rational(tok.text)
        if tok.kind == "const":
            return sympy.pi
        if tok.kind == "var":
            if nxt is not None and nxt.kind == "lpar" and nxt.adjacent:
                raise ArithError(f"{tok.text}( is a function or a product")
            return sympy.Symbol(tok.text)
        if tok.kind == "func":
            if nxt is None or nxt.kind != "lpar":
                raise ArithError(f"{tok.text} without parentheses")
            self.take()
            args = [self.expr()]
            while (t := self.take()).kind == "comma":
                args.append(self.expr())
            if t.kind != "rpar":
                raise ArithError("unbalanced parenthesis")
            return _function(tok.text, args)
        if tok.kind == "lpar":
            value = self.expr()
            if self.take().kind != "rpar":
                raise ArithError("unbalanced parenthesis")
            return value
        raise ArithError(f"unexpected {tok.text!r}")


def _bounded(value: sympy.Expr) -> sympy.Expr:
    if value.is_number:
        if value.is_finite is False or value.has(sympy.zoo, sympy.nan):
            raise ArithError("not a finite number")
        if value.is_real and value != 0 and abs(value) > sympy.Integer(10) ** MAX_DIGITS:
            raise ArithError("number too large")
    return value


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    if exponent.is_number:
        if abs(exponent) > MAX_EXPONENT:
            raise ArithError("exponent too large")
        if base.is_number:
            if base == 0 and exponent.is_negative:
                raise ArithError("division by zero")
            if base != 0 and abs(float(exponent)) * math.log10(max(abs(float(base)), 1e-300)) > MAX_DIGITS:
                raise ArithError("number too large")
    return _bounded(base ** exponent)


def _binomial(n: sympy.Expr, k: sympy.Expr) -> sympy.Expr:
    if not (n.is_integer and k.is_integer and n.is_number and k.is_number and 0 <= n <= 10 ** 4):
        raise ArithError("binomial of non-integers")
    return sympy.binomial(n, k)


def _function(name: str, args: list[sympy.Expr]) -> sympy.Expr:
    if name == "sqrt" and len(args) == 1:
        if args[0].is_number and args[0].is_negative:
            raise ArithError("square root of a negative number")
        return sympy.sqrt(args[0])
    if name == "binom" and len(args) == 2:
        return _binomial(*args)
    if not all(a.is_number for a in args) or len(args) < 2:
        raise ArithError(f"{name} of symbols or of one argument")
    if name in ("gcd", "lcm"):
        if not all(a.is_integer for a in args):
            raise ArithError(f"{name} of non-integers")
        return sympy.gcd(args) if name == "gcd" else sympy.lcm(args)
    return sympy.Max(*args) if name == "max" else sympy.Min(*args)


def parse_tokens(tokens: list[Token]) -> sympy.Expr:
    return _Parser(tokens).parse()


def parse_expression(text: str) -> sympy.Expr:
    """Parse one expression (after `normalize_math`); raises ArithError."""
    tokens = tokenize(normalize_math(text))
    if any(t.kind in ("eq", "approx") for t in tokens):
        raise ArithError("not a single expression")
    return parse_tokens(tokens)


# -------------------------------------------------------------------- chains
@dataclass(frozen=True)
class Side:
    text: str
    value: sympy.Expr
    is_bare: bool  # a single number or variable, no operation
    numbers: tuple[sympy.Rational, ...]  # every number literal written on this side
    operands: tuple[sympy.Rational, ...] = ()  # the literals that are not exponents


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


def side_of(tokens: list[Token]) -> Side:
    """The parsed side, or ArithError when any of its tokens is not understood."""
    value = parse_tokens(tokens)
    text = "".join(f" {t.text} " if t.kind in ("op", "choose") and t.text != "^" else t.text for t in tokens)
    text = re.sub(r"\s+", " ", text).strip()
    operands = [t for t in tokens if t.kind in ("num", "var", "const")]
    bare = len(operands) == 1 and not any(t.kind in ("op", "func", "fact", "choose") and t.text != "-"
                                          for t in tokens)
    nums = tuple(sympy.Rational(t.text) for t in tokens if t.kind == "num")
    operands = tuple(sympy.Rational(t.text) for i, t in enumerate(tokens)
                     if t.kind == "num" and not (i > 0 and tokens[i - 1].text == "^"))
    return Side(text, value, bare, nums, operands)


_BOUNDARY = ("word", "punct", "rel")


def _runs(tokens: list[Token]) -> list[list[Token]]:
    """Stretches of math between prose words, punctuation, relations and top-level commas."""
    runs: list[list[Token]] = [[]]
    depth = 0
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        kind = tok.kind
        if kind == "var" and tok.text in PROSE_LETTERS and (nxt is None or not nxt.adjacent) and (
                nxt is None or nxt.kind in ("word", "num", "var")):
            kind = "word"  # "a 3 + 4" / "I get"
        if kind == "word" and (tok.text.lower() in OPERATOR_WORDS or (
                tok.text.lower() == "of" and i > 0 and tokens[i - 1].kind in ("num", "rpar")
                and nxt is not None and nxt.kind in ("num", "lpar", "var"))):
            kind = "poison"  # acts on its neighbour: the side it touches is not parsed
        depth += (tok.kind == "lpar") - (tok.kind == "rpar")
        if kind in _BOUNDARY or (kind == "comma" and depth <= 0):
            runs.append([])
            depth = 0
        else:
            runs[-1].append(tok if kind == tok.kind else Token(kind, tok.text, tok.adjacent))
    return [r for r in runs if any(t.kind in ("eq", "approx") for t in r)]


def chains_in_line(line: str) -> list[Chain]:
    """The chains of one already normalized line."""
    out: list[Chain] = []
    for run in _runs(tokenize(line)):
        parts: list[list[Token]] = [[]]
        joins: list[bool] = []
        depth = 0
        for tok in run:
            depth += (tok.kind == "lpar") - (tok.kind == "rpar")
            if tok.kind in ("eq", "approx") and depth == 0:
                parts.append([])
                joins.append(tok.kind == "approx")
            else:
                parts[-1].append(tok)
        sides: list[Side] = []
        approx: list[bool] = []
        for i, toks in enumerate(parts):
            try:
                side = side_of(toks)
            except (ArithError, RecursionError, TypeError, ValueError, ZeroDivisionError, OverflowError):
                side = None
            if side is None:  # break the chain here: never trim a side to a part of it
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


def extract_chains(text: str) -> list[Chain]:
    """Every equality chain in `text`, in order, with unparseable sides splitting it."""
    chains: list[Chain] = []
    for line in normalize_math(text).splitlines():
        chains.extend(chains_in_line(line))
    return chains
