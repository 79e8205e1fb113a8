"""The task families of the code bank (prm_data/sources/code_bank.py): wording, reference blocks, inputs.

A family is a kind of small function (an aggregate over a filtered list, a
running maximum, a string transform, digit arithmetic, an index search, a
pairwise loop). Its `variants` are the fixed choices of the task (sum or count,
which predicate), each with the sentence that states it, the function names it
may get and the reference body's blocks. `extras` are optional requirements,
each one sentence and one more block of the body (a guard for the empty input,
a prefix limit, a value to ignore, a scaling of the result, ...): the difficulty
knob is the number of blocks. Every sentence is a template whose `{fields}` are
integers (`c`, `k`, `x`, `d`, `m`) or a replacement character (`r`), so a
question can be parsed back (`code_bank.parse_code_question`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

INT_FIELDS = ("c", "k", "x", "d", "m")


@dataclass(frozen=True)
class Variant:
    key: str
    sentence: str  # follows the intro ("... that " + sentence)
    names: tuple[str, ...]
    blocks: tuple[str, ...]  # the reference body; `{fields}` filled from the problem's constants
    accumulator: str | None = None  # the variable a `scale` extra multiplies


@dataclass(frozen=True)
class Extra:
    key: str
    sentence: str
    block: str
    position: str  # "pre": before the main blocks; "post": before the final return


@dataclass(frozen=True)
class Family:
    name: str
    arg: str
    kind: str  # the argument's kind: "list", "str" or "int"
    variants: tuple[Variant, ...]
    extras: tuple[str, ...]  # keys in EXTRAS this family accepts
    constants: dict = field(default_factory=dict)  # field -> (lo, hi) drawn for this family

    @property
    def base_blocks(self) -> int:
        return min(len(v.blocks) for v in self.variants)


def _predicates(var: str) -> list[tuple[str, str, str]]:
    """(key, words, condition on `var`) of the list predicates, each with constant `{c}`."""
    return [("gt", "greater than {c}", f"{var} > {{c}}"), ("lt", "less than {c}", f"{var} < {{c}}"),
            ("ge", "at least {c}", f"{var} >= {{c}}"), ("le", "at most {c}", f"{var} <= {{c}}"),
            ("div", "divisible by {k}", f"{var} % {{k}} == 0"),
            ("ndiv", "not divisible by {k}", f"{var} % {{k}} != 0")]


def _filter_aggregate() -> Family:
    variants = []
    for key, words, cond in _predicates("n"):
        variants.append(Variant(
            f"sum_{key}", f"returns the sum of the numbers in `nums` that are {words}",
            ("sum_selected", "filtered_sum", "total_matching"),
            ("    total = 0", f"    for n in nums:\n        if {cond}:\n            total += n", "    return total"),
            "total"))
        variants.append(Variant(
            f"count_{key}", f"returns how many numbers in `nums` are {words}",
            ("count_selected", "filtered_count", "how_many_match"),
            ("    count = 0", f"    for n in nums:\n        if {cond}:\n            count += 1", "    return count"),
            "count"))
    return Family("filter_aggregate", "nums", "list", tuple(variants), ("guard", "limit", "drop", "scale"),
                  {"c": (-2, 6), "k": (2, 4)})


def _running_extreme() -> Family:
    variants = []
    for key, word, op in (("max", "largest", ">"), ("min", "smallest", "<")):
        variants.append(Variant(
            f"running_{key}", f"returns a list whose i-th element is the {word} of the first i + 1 numbers in `nums`",
            (f"running_{key}", f"prefix_{key}", f"{key}_so_far"),
            ("    result = []", "    best = None",
             f"    for n in nums:\n        if best is None or n {op} best:\n            best = n\n"
             "        result.append(best)", "    return result")))
    return Family("running_extreme", "nums", "list", tuple(variants), ("limit", "drop"))


def _string_transform() -> Family:
    classes = (("vowel", "vowel", '"aeiouAEIOU"'), ("digit", "digit", '"0123456789"'), ("space", "space", '" "'))
    variants = []
    for key, word, chars in classes:
        variants.append(Variant(
            f"replace_{key}", f"returns `text` with every {word} replaced by '{{r}}'",
            (f"mask_{key}s", f"hide_{key}s", f"replace_{key}s"),
            ('    out = ""', f'    for ch in text:\n        if ch in {chars}:\n            out += "{{r}}"\n'
             "        else:\n            out += ch", "    return out")))
        variants.append(Variant(
            f"remove_{key}", f"returns `text` with every {word} removed",
            (f"drop_{key}s", f"strip_{key}s", f"without_{key}s"),
            ('    out = ""', f"    for ch in text:\n        if ch not in {chars}:\n            out += ch",
             "    return out")))
    return Family("string_transform", "text", "str", tuple(variants), ("trim", "upper"))


def _digit_arithmetic() -> Family:
    preds = (("gt", "greater than {c}", "d > {c}"), ("odd", "odd", "d % 2 == 1"), ("even", "even", "d % 2 == 0"))
    variants = []
    for key, words, cond in preds:
        variants.append(Variant(
            f"digit_sum_{key}", f"returns the sum of the decimal digits of `n` that are {words}, ignoring the sign of `n`",
            ("digit_sum", "sum_of_digits", "add_digits"),
            ("    n = abs(n)", "    total = 0",
             f"    for ch in str(n):\n        d = int(ch)\n        if {cond}:\n            total += d", "    return total"),
            "total"))
        variants.append(Variant(
            f"digit_count_{key}", f"returns how many decimal digits of `n` are {words}, ignoring the sign of `n`",
            ("digit_count", "count_digits", "tally_digits"),
            ("    n = abs(n)", "    count = 0",
             f"    for ch in str(n):\n        d = int(ch)\n        if {cond}:\n            count += 1", "    return count"),
            "count"))
    return Family("digit_arithmetic", "n", "int", tuple(variants), ("zero", "scale"), {"c": (1, 7)})


def _index_search() -> Family:
    variants = []
    for key, words, cond in _predicates("nums[i]"):
        variants.append(Variant(
            f"first_{key}", f"returns the index of the first number in `nums` that is {words}, or -1 if there is none",
            ("first_index", "find_first", "index_of_first"),
            (f"    for i in range(len(nums)):\n        if {cond}:\n            return i", "    return -1")))
        variants.append(Variant(
            f"last_{key}", f"returns the index of the last number in `nums` that is {words}, or -1 if there is none",
            ("last_index", "find_last", "index_of_last"),
            (f"    for i in range(len(nums) - 1, -1, -1):\n        if {cond}:\n            return i", "    return -1")))
    return Family("index_search", "nums", "list", tuple(variants), ("guard", "limit"), {"c": (-2, 6), "k": (2, 4)})


def _pairwise() -> Family:
    variants = (
        Variant("pair_sum", "returns the number of pairs of positions i < j with nums[i] + nums[j] equal to {c}",
                ("count_pairs", "pairs_summing_to", "pair_count"),
                ("    count = 0", "    for i in range(len(nums)):\n        for j in range(i + 1, len(nums)):\n"
                 "            if nums[i] + nums[j] == {c}:\n                count += 1", "    return count"), "count"),
        Variant("rises", "returns how many numbers in `nums` are greater than the number just before them",
                ("count_rises", "increases", "count_steps_up"),
                ("    count = 0", "    for i in range(1, len(nums)):\n        if nums[i] > nums[i - 1]:\n"
                 "            count += 1", "    return count"), "count"),
        Variant("falls", "returns how many numbers in `nums` are smaller than the number just before them",
                ("count_falls", "decreases", "count_steps_down"),
                ("    count = 0", "    for i in range(1, len(nums)):\n        if nums[i] < nums[i - 1]:\n"
                 "            count += 1", "    return count"), "count"),
    )
    # a prefix limit of 2 or 3 leaves at most a pair or two: the tests could not tell bugs apart
    return Family("pairwise", "nums", "list", variants, ("guard", "limit", "drop", "scale"),
                  {"c": (2, 9), "k": (4, 6)})


EXTRAS = {
    "guard": Extra("guard", "If `nums` is empty, return {d}", "    if not nums:\n        return {d}", "pre"),
    "zero": Extra("zero", "If `n` is 0, return {d}", "    if n == 0:\n        return {d}", "pre"),
    "limit": Extra("limit", "Only the first {k} numbers of `nums` are considered", "    nums = nums[:{k}]", "pre"),
    "drop": Extra("drop", "Numbers equal to {x} are ignored", "    nums = [v for v in nums if v != {x}]", "pre"),
    "trim": Extra("trim", "Spaces at the start and end of `text` are removed first", "    text = text.strip()", "pre"),
    "scale": Extra("scale", "The result is multiplied by {m} before it is returned", "    {acc} = {acc} * {m}", "post"),
    "upper": Extra("upper", "The result is returned in upper case", "    out = out.upper()", "post"),
}
EXTRA_ORDER = ("guard", "zero", "limit", "drop", "trim", "scale", "upper")  # their order in the body and question
EXTRA_CONSTANTS = {"d": (1, 9), "k": (2, 5), "x": (0, 5), "m": (2, 5)}  # d >= 1: a guard returning 0 or -1 would change nothing

FAMILIES: dict[str, Family] = {f.name: f for f in (
    _filter_aggregate(), _running_extreme(), _string_transform(), _digit_arithmetic(), _index_search(), _pairwise())}

INTROS = ("Write a Python function `{sig}` that {task}", "Implement `{sig}` so that it {task}",
          "Define a function `{sig}` which {task}")
REPLACEMENTS = "*#_-"


EDGE_INPUTS = 3  # the first inputs of `draw_inputs` are edge cases: every problem's tests keep them


def draw_inputs(family: Family, rng: random.Random, constants: dict, count: int = 24) -> list:
    """Edge cases first (empty, a single element, negatives), then random ones, some holding the constants."""
    hits = [v for k, v in constants.items() if k in ("c", "x", "k")]
    if family.kind == "list":
        out = [[], [rng.choice(hits or [1])], [-rng.randint(1, 9), rng.randint(0, 9)]]
        while len(out) < count:
            n = rng.randint(2, 8)
            xs = [rng.randint(-6, 12) for _ in range(n)]
            if hits and rng.random() < 0.7:
                xs[rng.randrange(n)] = rng.choice(hits)
            out.append(xs)
        return out
    if family.kind == "str":
        alphabet = "abcdeiouxyz AE19 "
        out = ["", rng.choice("aebx1 "), "  " + "".join(rng.choice(alphabet) for _ in range(5)) + " "]
        while len(out) < count:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(3, 12))))
        return out
    out = [0, rng.randint(1, 9), -rng.randint(10, 9999)]
    while len(out) < count:
        out.append(rng.choice([1, -1]) * rng.randint(10, 999_999))
    return out
