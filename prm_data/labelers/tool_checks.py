"""The single checks of `tool_verify`: comparing a computed with a claimed value, the typo-like
near miss of a carried number, and code run in the sandbox. Each returns the evidence dicts
that `tool_verify` stores with its verdict."""

from __future__ import annotations

import re

import sympy

from prm_data.failures import FailureLog
from prm_data.labelers.arith import Chain
from prm_data.labelers.sandbox import run_python

_STATED_AFTER_CODE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# Round numbers solutions use without any word naming them; others need a word ("week" -> 7).
COMMON_CONSTANTS = frozenset({0, 1, 10, 100, 1000})


def show(value) -> str:
    value = sympy.nsimplify(value) if isinstance(value, sympy.Float) else value
    if isinstance(value, sympy.Rational) and not value.is_integer:
        return f"{value} (≈{float(value):.6g})"
    if isinstance(value, sympy.Expr) and value.is_number and not value.is_Rational:
        return f"{value} (≈{float(sympy.N(value, 15)):.6g})"
    return str(value)


def _decimals(written: str) -> int:
    return max((len(t) for t in re.findall(r"\d+\.(\d+)", written.replace(" ", ""))), default=0)


def _half_last_significant(written: str) -> sympy.Expr:
    """Half a unit of the last significant digit of an integer as written: `1000` or `10^3` has one
    (±500), `1024` four (±0.5); anything else gives 0 (decimals are handled by their digits)."""
    text = written.replace(" ", "").lstrip("-")
    if m := re.fullmatch(r"10\^(\d+)", text):
        return sympy.Rational(1, 2) * sympy.Integer(10) ** int(m.group(1))
    if re.fullmatch(r"\d+", text):
        return sympy.Rational(1, 2) * sympy.Integer(10) ** (len(text) - len(text.rstrip("0") or "0"))
    return sympy.Integer(0)


def compare(computed: sympy.Expr, claimed: sympy.Expr, written: str, approx: bool,
            approx_rel_tol: float, other_side: str = "") -> tuple[bool, bool]:
    """(holds, exact): exact equality; a value written with d decimals may be the computed one rounded
    or truncated to d decimals; `≈` allows `approx_rel_tol`. `exact` is False when only a tolerance
    (≈) decided a contradiction."""
    if computed.is_Rational and claimed.is_Rational:  # the common case, exact and fast
        diff = abs(computed - claimed)
        if diff == 0:
            return True, True
    else:
        diff = abs(sympy.N(computed - claimed, 40))
        if diff == 0 or diff < sympy.Float("1e-25") * max(1, abs(sympy.N(computed, 40))):
            return True, True
    d = _decimals(written)
    if d:
        unit = sympy.Rational(1, 10 ** d)
        if diff <= unit / 2:
            return True, True
        truncated = sympy.Integer(int(sympy.N(computed, 40) * 10 ** d)) * unit  # toward zero
        if truncated == claimed:
            return True, True
    if approx:  # `2^10 ≈ 10^3`: as close as the digits written say, or approx_rel_tol
        tol = max(sympy.Rational(str(approx_rel_tol)) * abs(sympy.N(computed, 40)), sympy.Rational(1, 2),
                  _half_last_significant(written), _half_last_significant(other_side))
        return bool(diff <= tol), False
    return False, True


def check_grounding(chain: Chain, index: int, ctx, step_results: set, config) -> list[dict]:
    """Inputs of the computation must come from somewhere; near misses of the previous result are copying errors."""
    inputs = next((s for s in chain.sides if not s.is_bare), None)
    if inputs is None:
        return []
    out = []
    for n in inputs.operands:  # not exponents: `3^2` after a result of 3 is no copying error
        if n in ctx.grounded or n in step_results or not n.is_integer:
            continue
        prev = ctx.previous_result
        if (config.check_carried_values and index > 0 and prev is not None
                and int(n) not in COMMON_CONSTANTS and near_miss(n, prev)):
            out.append({"check": "carried_value", "claim": chain.text, "used": show(n),
                        "expected": show(prev), "source": f"result of step {index - 1}", "ok": False})
            continue
        if config.check_question_values and int(n) not in COMMON_CONSTANTS and abs(n) >= 10:
            # small numbers are near some question number by chance far too often to tell anything
            near = sorted(q for q in ctx.question_numbers if abs(q) >= 10 and near_miss(n, q, strict=True))
            if near:
                out.append({"check": "question_value", "claim": chain.text, "used": show(n),
                            "expected": show(near[0]), "source": "question", "ok": False})
                continue
        out.append({"check": "ungrounded_number", "claim": chain.text, "used": show(n), "ok": None})
    return out


def near_miss(used, expected, strict: bool = False) -> bool:
    """A typo-like miss: off by one or two, two adjacent digits swapped, or one digit changed,
    added or dropped. `strict` (for comparisons against every question number, where chance
    matches are many) allows digit changes only in numbers of three or more digits."""
    if not (getattr(expected, "is_integer", False) and used.is_integer) or used == expected:
        return False
    if abs(used - expected) <= 2:
        return True
    a, b = str(abs(int(used))), str(abs(int(expected)))
    min_len = 3 if strict else 1
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]:
            return True
        return len(diff) == 1 and len(a) >= min_len
    short, long_ = sorted((a, b), key=len)
    if len(long_) - len(short) != 1 or len(short) < min_len:
        return False
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def check_code(step: str, config, solution, index: int, failures: FailureLog | None, labeler: str,
               code_block: re.Pattern) -> list[dict]:
    """Run each fenced block with `run_python(code, config.sandbox)`; the number stated after it must match."""
    out = []
    for m in code_block.finditer(step):
        code = m.group(1)
        after = _STATED_AFTER_CODE.search(step, m.end())
        result = run_python(code, config.sandbox)
        printed = _STATED_AFTER_CODE.findall(result.stdout)
        check = {"check": "code", "claim": code[:500], "status": result.status,
                 "stdout": result.stdout[-500:], "ok": None}
        if result.status != "ok":
            check["stderr"] = result.stderr[-500:]
            if failures is not None:
                failures.record(f"label:{labeler}", f"code block {result.status}",
                                item_id=f"{solution.rollout_id}:{index}", input=code)
        elif printed and after is not None:
            computed = sympy.Rational(printed[-1].replace(",", ""))
            claimed = sympy.Rational(after.group().replace(",", ""))
            check.update(computed=show(computed), claimed=show(claimed), ok=bool(computed == claimed))
        out.append(check)
    return out
