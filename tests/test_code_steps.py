"""The `code_block` step policy on realistic solutions: what the steps are, that joining them
back gives a prefix a model continues as code, and that code steps keep the tokens that matter."""

from __future__ import annotations

import ast

import pytest

from prm_data.steps import continuation_steps, join_steps, normalize_step, split_steps

FENCED_WITH_REASONING = '''We need the sum of the even numbers, so we keep a running total.

Every element is checked once.

```python
def sum_even(nums):
    """Sum of the even numbers in nums."""
    total = 0
    # walk the list once

    for n in nums:
        if n % 2 == 0:

            total += n
        else:
            continue
    return total
```

This runs in linear time.'''

BARE_WITH_HELPER = '''import math


def is_square(n):
    return n >= 0 and math.isqrt(n) ** 2 == n


def count_squares(nums,
                  offset=0):
    count = 0
    for n in nums:
        if is_square(n + offset):
            count += 1
    return count
'''

DECORATED = '''```py
from functools import lru_cache

@lru_cache(maxsize=None)
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

assert fib(10) == 55
```'''

NESTED_AND_CLAUSES = '''def parse(items):
    out = []
    def clean(s):
        return s.strip()
    for s in items:
        try:
            out.append(int(clean(s)))
        except ValueError:
            out.append(0)
    while out and out[-1] == 0:
        out.pop()
    return out
'''

SOLUTIONS = [FENCED_WITH_REASONING, BARE_WITH_HELPER, DECORATED, NESTED_AND_CLAUSES]


def test_reasoning_paragraphs_header_and_each_body_statement_are_steps():
    assert split_steps(FENCED_WITH_REASONING, "code_block") == [
        "We need the sum of the even numbers, so we keep a running total.",
        "Every element is checked once.",
        '```python\ndef sum_even(nums):\n    """Sum of the even numbers in nums."""',
        "    total = 0",
        "    # walk the list once\n\n    for n in nums:\n        if n % 2 == 0:\n\n            total += n\n"
        "        else:\n            continue",
        "    return total\n```",
        "This runs in linear time.",
    ]


def test_bare_code_module_statements_and_a_multiline_signature():
    assert split_steps(BARE_WITH_HELPER, "code_block") == [
        "import math",
        "def is_square(n):",
        "    return n >= 0 and math.isqrt(n) ** 2 == n",
        "def count_squares(nums,\n                  offset=0):",
        "    count = 0",
        "    for n in nums:\n        if is_square(n + offset):\n            count += 1",
        "    return count",
    ]


def test_a_decorator_belongs_to_the_header_and_module_code_after_the_function_is_a_step():
    steps = split_steps(DECORATED, "code_block")
    assert steps[:2] == ["```py\nfrom functools import lru_cache", "@lru_cache(maxsize=None)\ndef fib(n):"]
    assert steps[2] == "    if n < 2:\n        return n"
    assert steps[-1] == "assert fib(10) == 55\n```"


def test_nested_functions_and_try_except_stay_inside_their_statement():
    steps = split_steps(NESTED_AND_CLAUSES, "code_block")
    assert steps[2] == "    def clean(s):\n        return s.strip()"
    assert steps[3].startswith("    for s in items:") and steps[3].endswith("            out.append(0)")
    assert len(steps) == 6


def test_code_cut_off_mid_statement_is_still_split():
    cut = "```python\ndef f(nums):\n    total = 0\n    for n in nums:\n        if n > (3 +\n"
    assert split_steps(cut, "code_block") == ["```python\ndef f(nums):", "    total = 0",
                                              "    for n in nums:\n        if n > (3 +"]


def test_plain_prose_splits_as_paragraphs():
    assert split_steps("First, add.\n\nThen it is 5.", "code_block") == ["First, add.", "Then it is 5."]


@pytest.mark.parametrize("text", SOLUTIONS)
def test_join_then_split_gives_the_steps_back(text):
    steps = split_steps(text, "code_block")
    assert split_steps(join_steps(steps, "code_block"), "code_block") == steps
    assert split_steps(join_steps(steps, "code_block", trailing=False), "code_block") == steps


def test_a_prefix_inside_the_fence_leaves_it_open_and_ends_on_a_new_code_line():
    steps = split_steps(FENCED_WITH_REASONING, "code_block")
    prefix = join_steps(steps[:4], "code_block")
    assert prefix.endswith("    total = 0\n")
    assert prefix.count("```") == 1  # open: what follows is code
    after_fence = join_steps(steps[:6], "code_block")
    assert after_fence.endswith("```\n\n")  # closed: what follows is a paragraph


@pytest.mark.parametrize("text", SOLUTIONS)
def test_every_prefix_plus_the_rest_of_the_code_runs_like_the_original(text):
    """The joined prefix is a valid place to continue: prefix + the rest of the joined text splits
    into the remaining steps, and the joined solution is the same program as the original."""
    steps = split_steps(text, "code_block")
    whole = join_steps(steps, "code_block", trailing=False)
    for k in range(len(steps)):
        prefix = join_steps(steps[:k], "code_block")
        rest = whole[len(prefix):] if whole.startswith(prefix) else None
        assert rest is not None, f"the prefix of {k} steps is not the start of the joined solution"
        assert continuation_steps(steps[:k], rest, "code_block") == steps[k:]
    assert _program(whole) == _program(text)


def test_a_continuation_that_extends_the_last_statement_is_a_step_and_the_prefix_is_kept():
    prefix = ["def sign(x):", "    if x > 0:\n        s = 1"]
    cont = continuation_steps(prefix, "    else:\n        s = -1\n    return s\n", "code_block")
    assert cont == ["    else:\n        s = -1", "    return s"]


def test_continuation_of_the_other_policies_splits_the_text_alone():
    assert continuation_steps(["Step 1: a"], "Step 2: b\n\nStep 3: c", "blank_line") == ["Step 2: b", "Step 3: c"]


def test_code_steps_differing_in_one_token_are_different_nodes():
    assert normalize_step("    while i < n:\n        i += 1") != normalize_step("    while i <= n:\n        i += 1")
    assert normalize_step("    for i in range(len(xs)):") != normalize_step("    for i in range(len(xs) - 1):")
    assert normalize_step("    return total") != normalize_step("    return Total")
    assert normalize_step("        return total") != normalize_step("    return total")  # inside the loop or not


def test_code_steps_differing_only_in_spacing_or_comments_are_one_node():
    assert normalize_step("    if i<n:  # bound\n        x=x+1") == normalize_step("    if i < n:\n        x = x + 1")


def test_math_steps_keep_their_normal_form():
    assert normalize_step("Step 3:  Mia has 2 + 3 = 5 apples.") == "mia has 2+3=5 apples"
    assert normalize_step("x = 5") == normalize_step("X = 5")


def _program(text: str) -> str:
    """The code of a solution (its fenced block, or all of it) as Python parses it."""
    if "```" in text:
        text = text.split("```", 2)[1].split("\n", 1)[1]
    return ast.dump(ast.parse(text))
