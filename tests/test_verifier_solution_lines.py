"""The `verifier_sft` user message's step lines: `Step k: ` and the step's text without a marker of its own.

The lines skip the marker regex for texts that already begin with their own `Step k: ` or that cannot
begin a marker (prm_data/exports/verifier_sft.py); whatever the text, the lines must be exactly those
the regex gives, `Step k: ` + the text with its leading marker removed.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prm_data.exports.verifier_sft import _STEP_MARKER, _numbers, _solution_lines

PIECES = ["Step", "step", "STEP", "Step 1: ", "Step 2: ", "Step 10: ", "**", " ", "  ", "\t", "\n", "\v", "\u00a0",
          "1", "12", ":", ".", ")", "x", "é", ""]


def by_regex(texts: pa.Array, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        "Step ", pc.cast(pa.array(numbers), pa.string()), ": ", pc.replace_substring_regex(texts, _STEP_MARKER, "", max_replacements=1), "")


def test_lines_equal_the_regexs_for_texts_of_every_shape():
    rng = random.Random(7)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6))) for _ in range(5000)]
    texts += [None, "", "Step 1:", "Step 1: ", "Step 1:  two spaces", "Step 1: \u00a0nbsp", "Step 1:\tx", "Step 3: late", "Step 1000: x", "Step 999: x"]
    steps = pa.array(texts, pa.string())
    offsets = np.array([0, 2, 2, 7, len(texts)])  # rows of 2, 0, 5 and the rest of the steps
    numbers = _numbers(offsets)
    expected, got = by_regex(steps, numbers), _solution_lines(steps, numbers)
    assert got.equals(expected), [(t, e, g) for t, e, g in zip(texts, expected.to_pylist(), got.to_pylist()) if e != g][:3]
    assert got.to_pylist()[len(texts) - 10:len(texts) - 8] == [None, "Step 4995: "]  # a null text stays null


def test_a_slice_of_the_steps_gives_the_lines_of_that_slice():
    steps = pa.array([f"Step {i % 4 + 1}: {'*' * (i % 3)}x{i}" for i in range(50)], pa.string()).slice(11, 30)
    offsets = np.array([0, 4, 30])
    numbers = _numbers(offsets)
    assert _solution_lines(steps, numbers).equals(by_regex(steps, numbers))


def test_a_text_that_begins_with_its_own_marker_is_its_line_unchanged():
    steps = pa.array(["Step 1: add 2 and 3.", "Step 2: so 5.", "**Step 3**: done."], pa.string())
    numbers = _numbers(np.array([0, 3]))
    assert _solution_lines(steps, numbers).to_pylist() == ["Step 1: add 2 and 3.", "Step 2: so 5.", "Step 3: done."]


def test_numbers_of_several_digits_are_matched_digit_by_digit():
    texts = [f"Step {k}: t" for k in range(1, 1201)]
    texts[999] = "Step 100: t"  # step 1000 with another step's marker: the marker is replaced
    texts[1099] = "Step 1100:  t"  # its own marker, then more whitespace that the regex also removes
    steps = pa.array(texts, pa.string())
    numbers = _numbers(np.array([0, len(texts)]))
    lines = _solution_lines(steps, numbers)
    assert lines.equals(by_regex(steps, numbers))
    assert lines[999].as_py() == "Step 1000: t" and lines[1099].as_py() == "Step 1100: t"
