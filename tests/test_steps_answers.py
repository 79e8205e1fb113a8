"""Step splitting under each policy, final-answer extraction and equivalence, by hand-written cases."""

from __future__ import annotations

import pytest

from prm_data.answers import answers_match, extract_answer, gradeable, grade, gsm8k_answer, ungradeable_reason
from prm_data.steps import join_steps, normalize_step, split_steps

# ------------------------------------------------------------------ step splitting
SPLITS = [
    # blank_line (Qwen2.5-Math-PRM, ProcessBench)
    ("blank_line", "First add.\n\nThen multiply.\n\nDone.", ["First add.", "Then multiply.", "Done."]),
    ("blank_line", "a\n\n\n\nb", ["a", "b"]),
    ("blank_line", "a\n  \t\nb", ["a", "b"]),
    ("blank_line", "a\r\n\r\nb", ["a", "b"]),
    ("blank_line", "line one\nline two\n\nnext", ["line one\nline two", "next"]),
    ("blank_line", "\n\n  only step  \n\n", ["only step"]),
    ("blank_line", "", []),
    # step_k (Math-Shepherd)
    ("step_k", "Step 1: add 2.\nStep 2: add 3.", ["Step 1: add 2.", "Step 2: add 3."]),
    ("step_k", "Let us solve.\nStep 1: x\nStep 2: y", ["Let us solve.", "Step 1: x", "Step 2: y"]),
    ("step_k", "Step 1: x\ncontinued\nStep 2: y", ["Step 1: x\ncontinued", "Step 2: y"]),
    ("step_k", "**Step 1:** x\n**Step 2.** y", ["**Step 1:** x", "**Step 2.** y"]),
    ("step_k", "step 1) a\nSTEP 2: b", ["step 1) a", "STEP 2: b"]),
    ("step_k", "Step 9: a\nStep 10: b\nStep 11: c", ["Step 9: a", "Step 10: b", "Step 11: c"]),
    ("step_k", "In step 2: we reuse it.", ["In step 2: we reuse it."]),  # a marker only at line start
    ("step_k", "no markers\n\nat all", ["no markers", "at all"]),  # falls back to blank lines
    # line
    ("line", "a\nb\n\nc\n", ["a", "b", "c"]),
    ("line", "  x = 1  \n\ty = 2", ["x = 1", "y = 2"]),
    ("line", "   \n \n", []),
]


@pytest.mark.parametrize("policy,text,expected", SPLITS)
def test_split_steps(policy, text, expected):
    assert split_steps(text, policy) == expected


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown step policy"):
        split_steps("a", "sentence")


@pytest.mark.parametrize("policy", ["blank_line", "line", "step_k"])
def test_join_then_split_gives_the_steps_back(policy):
    steps = ["Step 1: 2 + 3 = 5.", "Step 2: 5 * 2 = 10.", "Step 3: The answer is \\boxed{10}."]
    assert split_steps(join_steps(steps, policy), policy) == steps


def test_join_steps_ends_with_the_separator_to_continue_from():
    assert join_steps(["a", "b"]) == "a\n\nb\n\n"
    assert join_steps(["a", "b"], "line") == "a\nb\n"
    assert join_steps(["a", "b"], trailing=False) == "a\n\nb"
    assert join_steps([]) == ""


def test_normalize_step_ignores_marker_case_and_spacing_but_not_numbers():
    assert normalize_step("Step 3:  Mia has 2 + 3 = 5 apples.") == normalize_step("mia has 2+3=5 apples")
    assert normalize_step("2 + 3 = 5") != normalize_step("2 + 3 = 6")


# ------------------------------------------------------------------ answer extraction
EXTRACTIONS = [
    ("So the total is \\boxed{42}.", "42"),
    ("Thus \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{x^{2}+\\sqrt{y_{1}}}", "x^{2}+\\sqrt{y_{1}}"),  # nested braces
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("First \\boxed{3}, on second thought \\boxed{5}.", "5"),  # the last box counts
    ("\\fbox{7}", "7"),
    ("The answer is 42.", "42"),
    ("The answer is: $7$", "7"),
    ("So the answer is 3.5.\nCheck done.", "3.5"),
    ("The final answer is 18 apples.", "18"),  # math-verify's anchored extraction keeps the number
    ("The answer is \\boxed{4}.", "4"),  # the box wins over the phrase
    ("Natalia sold 72 clips.\n#### 72", "72"),
    ("#### 1,234", "1,234"),
    ("I am not sure what to do here.", None),
    # where real model and human solutions put the answer
    ("Final Answer: The final answer is $12$. I hope it is correct.", "12"),
    ("**Answer:** **42**", "42"),
    ("**Final answer: 150 km**", "150"),
    ("So Kim has **19** stamps left.", "19"),
    ("Thus we get\n\n# Answer\n\n50", "50"),
    ("Adding the equations gives 2x = 14.\nTherefore, $x = 7$.", "x = 7"),
    ("Their product divided by 8 is 288/8 = 36.", "36"),
    ("Note that 7^2 = 49, and so 7^4 = 49^2 = 2401 ends in 1.", "1"),
    ("The answer is 5x(x+1)^2.", "5x(x+1)^2"),  # not the `5` math-verify's plain-number pattern stops at
    ("So no such integer exists. The answer is No.", "No"),
    ("Both are prime, so yes.\n**Answer: Yes**", "Yes"),
    ("Step 4: Sam keeps one of 4 equal groups, so 12 / 4 = 3.", None),  # still a numbered step: no answer stated
    ("Step 1: I give up.", None),
    ("Hence there are no such values.", None),
    ("So, there are 12 eggs left.\n\nI hope this helps!", "12"),  # a closing pleasantry is passed over
    ("Try t = 5: 25 + 5 = 30.\n\nSo there is no solution.", None),  # a prose conclusion is not
    ("The correct option is (B).", "(B)"),
    ("The pairs are (1, 2) and (2, 1).", None),  # math-verify's `1)` is a fragment, not an answer
    ("Truncated: \\boxed{12", None),  # an unbalanced box is no answer
    ("", None),
]


@pytest.mark.parametrize("text,expected", EXTRACTIONS)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_gsm8k_answer_strips_commas():
    assert gsm8k_answer("300*4=1200\n#### 1,200") == "1200"
    assert gsm8k_answer("no marker") is None


# ------------------------------------------------------------------ equivalence
SAME = [
    ("\\frac{1}{2}", "0.5"),
    ("1/2", "0.5"),
    ("\\dfrac{3}{4}", "0.75"),
    ("\\frac{2}{4}", "\\frac{1}{2}"),
    ("\\frac12", "0.5"),
    ("$\\frac{1}{2}$", "1/2"),
    ("\\(\\frac{1}{2}\\)", "0.5"),
    ("1,234", "1234"),
    ("\\$1,000", "1000"),
    ("3", "3.0"),
    ("6", "6."),
    ("12 apples", "12"),
    ("5 dollars", "5"),
    ("5\\%", "5"),
    ("x = 3", "3"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("\\boxed{3}", "3"),
    ("-7", "-7.0"),
]

DIFFERENT = [
    ("12", "21"),
    ("-4", "4"),
    ("\\frac{1}{2}", "2"),
    ("1,234", "1.234"),  # a thousands separator is not a decimal point
    ("3", "3,000"),
    ("0.5", "0.50001"),
    ("1/3", "0.33"),
    ("10 cm", "100"),
    ("\\pi", "3.14"),
    ("2\\sqrt{2}", "2"),  # was a false match before bare LaTeX was wrapped in $...$
    ("(1,2)", "(2,1)"),
    ("", ""),
    (None, "3"),
]


@pytest.mark.parametrize("predicted,gold", SAME)
def test_equivalent_answers_match(predicted, gold):
    assert answers_match(predicted, gold)


@pytest.mark.parametrize("predicted,gold", DIFFERENT)
def test_different_answers_do_not_match(predicted, gold):
    assert not answers_match(predicted, gold)


@pytest.mark.parametrize("text,gold,status,answer", [
    ("Step 1: 2 + 2 = 4.\n\nThe answer is \\boxed{4}.", "4", "correct", "4"),
    ("Since n > 0, n = 3 is the only possible value.", "3 is the only possible value", "ungradeable", "3"),
    ("So the answer is No.", "No", "ungradeable", "No"),
    ("So \\boxed{(2, 4)}.", "x = 2, or equivalently the point (2, 4)", "ungradeable", "(2, 4)"),
    ("I do not know.", "No such values", "ungradeable", None),
    ("Step 1: 2 + 2 = 5.\n\nThe answer is \\boxed{5}.", "4", "incorrect", "5"),
    ("Step 1: I give up.", "4", "unparseable", None),
    ("Half of it: \\boxed{\\frac{7}{2}}", "3.5", "correct", "\\frac{7}{2}"),
])
def test_grade(text, gold, status, answer):
    assert grade(text, gold) == (status, answer)


# ------------------------------------------------------------------ words, prose and gradeability
@pytest.mark.parametrize("predicted,gold,same", [
    ("No.", "No", True),
    ("no", "No", True),
    ("Yes", "yes", True),
    ("sey", "Yes", False),  # math-verify alone reads both as products of letters and matches them
    ("on", "No", False),
    ("Yes", "No", False),
    ("(B)", "B", True),
    ("B", "\\text{(B)}", True),
    ("C", "B", False),
    ("3", "3 is the only possible value", True),  # the single math span of a prose gold
    ("4", "3 is the only possible value", False),
    ("(2, 4)", "x = 2, or equivalently (2, 4)", True),  # any one form of a multi-form gold
    ("none", "3", False),
])
def test_words_are_compared_as_words_and_prose_golds_by_their_value(predicted, gold, same):
    assert answers_match(predicted, gold) is same


@pytest.mark.parametrize("gold,reason", [
    ("3 is the only possible value", "prose"),
    ("No such values", "prose"),
    ("The sequence is unbounded.", "prose"),
    ("Alice wins", "prose"),
    ("Yes", "yes/no"),
    ("No.", "yes/no"),
    ("x = 2, or equivalently the point (2, 4)", "several forms"),
    ("5 or 7", "several forms"),
    ("????", "math-verify reads no number"),
    ("\\frac{7}{", "math-verify reads no number"),
])
def test_gold_answers_that_need_a_judge_are_refused_with_the_reason(gold, reason):
    assert not gradeable(gold)
    assert ungradeable_reason(gold).startswith(reason)


@pytest.mark.parametrize("gold", ["42", "12 apples", "10 cm", "x = 3", "\\frac{1}{2}", "25\\pi", "2, 3",
                                  "(1, 2), (2, 1)", "(B)", "-\\frac{1}{2}", "1,234", "\\{1,2\\}"])
def test_values_are_gradeable(gold):
    assert gradeable(gold) and ungradeable_reason(gold) is None


def test_grading_works_the_same_in_a_worker_thread():
    # math-verify's timeout uses SIGALRM, which only the main thread may set; task runners use threads
    from concurrent.futures import ThreadPoolExecutor

    cases = [("The answer is \\boxed{\\frac{7}{2}}.", "3.5"), ("So Kim has **19** stamps left.", "19"),
             ("Therefore, $x = 3$.", "3"), ("The answer is 5.", "4")]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda c: grade(*c), cases))
    assert threaded == [grade(*c) for c in cases]
    assert [status for status, _ in threaded] == ["correct", "correct", "correct", "incorrect"]
