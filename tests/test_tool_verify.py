"""Tool verification: arithmetic, substitution and carried values are checked with sympy, never eval."""

from __future__ import annotations

from collections import Counter

import pytest

from prm_data.labelers.arith import ArithError, extract_chains, parse_expression
from prm_data.labelers.inputs import Solution
from prm_data.labelers.sandbox import SandboxConfig
from prm_data.labelers.tool_verify import ToolVerifyConfig, label_tool_verify, verdict_of, verify_solution
from prm_data.labelers.sim_truth import error_kind, problem_of, sim_rollouts


def verdicts(question: str, steps: list[str], config: ToolVerifyConfig = ToolVerifyConfig()) -> list[str]:
    return [verdict_of(l) for l in verify_solution(Solution("p", "r", question, tuple(steps)), config)]


@pytest.mark.parametrize("claim, verdict", [
    ("70+99+70=239", "verified"),
    ("70+99+70=238", "contradicted"),
    ("3 x 4 = 12", "verified"),
    ("3 × 4 = 13", "contradicted"),
    (r"\frac{1}{2} \cdot 4 = 2", "verified"),
    (r"\frac{1}{2} \cdot 4 = 3", "contradicted"),
    ("12 ÷ 4 = 3", "verified"),
    ("$1,200 + $300 = $1,500", "verified"),
    ("20% × 25 = 5", "verified"),
    ("10/3 ≈ 3.33", "verified"),
    ("10/3 = 3.33", "verified"),  # rounded to the precision written
    ("10/3 = 3.4", "contradicted"),
    ("2/3 = 0.66", "verified"),  # truncated to the digits written
    ("10/3 ≈ 4", "contradicted"),
    ("2^10 = 1024", "verified"),
    ("(5 + 3) * 2 = 16 = 4 * 4", "verified"),
    ("3 apples + 4 apples = 7 apples", "verified"),
    ("12 = 3 * 4", "verified"),
    ("12 = 3 * 5", "contradicted"),
    ("The answer is \\boxed{8}.", "not_checkable"),
    ("20% of 50 = 10", "not_checkable"),  # prose between the numbers: no computation is claimed
    ("2 dozen = 24 eggs", "not_checkable"),
])
def test_each_spelling_of_an_arithmetic_claim_is_checked(claim, verdict):
    assert verdicts("A question.", [claim]) == [verdict]


def test_a_contradiction_reports_the_expression_and_both_values():
    label = verify_solution(Solution("p", "r", "q", ("So 70+99+70=238 in total.",)))[0]
    assert label.hard_label is False and label.value == 0.0 and label.confidence == 1.0
    [check] = [c for c in label.evidence["checks"] if c["check"] == "arithmetic"]
    assert check == {"check": "arithmetic", "claim": "70 + 99 + 70 = 238", "computed": "239",
                     "claimed": "238", "ok": False, "exact": True}


def test_a_value_is_substituted_back_into_the_equation_of_the_question():
    q = "Solve 2x + 3 = 13 for x."
    assert verdicts(q, ["Subtract 3 from both sides.", "So x = 5."]) == ["not_checkable", "verified"]
    labels = verify_solution(Solution("p", "r", q, ("Subtract 3.", "So x = 6.")))
    assert verdict_of(labels[1]) == "contradicted"
    assert labels[1].confidence < 1.0  # it rests on reading x = 6 as the solution of that equation
    check = next(c for c in labels[1].evidence["checks"] if c["check"] == "substitution")
    assert check["computed"] == "15" and check["claimed"] == "13" and check["values"] == {"x": "6"}


def test_substitution_checks_equations_stated_in_earlier_steps():
    assert verdicts("Find x.", ["We get x^2 - 5x + 6 = 0.", "So x = 2 or x = 3."]) == ["not_checkable", "verified"]
    assert verdicts("Find x.", ["We get x^2 - 5x + 6 = 0.", "So x = 4."])[1] == "contradicted"


def test_a_number_copied_wrongly_from_the_previous_result_is_a_contradiction():
    q = "Tim has 15 marbles and loses 4, then finds 6."
    label = verify_solution(Solution("p", "r", q, ("15 - 4 = 11", "12 + 6 = 18")))[1]
    assert verdict_of(label) == "contradicted"
    check = next(c for c in label.evidence["checks"] if c["check"] == "carried_value")
    assert check["used"] == "12" and check["expected"] == "11"
    assert verdicts(q, ["15 - 4 = 11", "11 + 6 = 17"]) == ["verified", "verified"]
    assert label.confidence < 1.0  # a near miss is a likely typo, not a proof


def test_a_step_that_computes_correctly_from_an_earlier_wrong_result_is_only_locally_verified():
    assert verdicts("Tim has 15 marbles and loses 4, then finds 6.", ["15 - 4 = 12", "12 + 6 = 18"]) == [
        "contradicted", "verified"]


def test_realistic_correct_solutions_raise_no_false_alarm():
    solutions = {
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.":
            ["Natalia sold 48/2 = 24 clips in May.", "Natalia sold 48+24 = 72 clips altogether.",
             "The answer is \\boxed{72}."],
        "Weng earns $12 an hour for babysitting. Yesterday, she did 50 minutes of babysitting.":
            ["Weng earns 12/60 = $0.2 per minute.", "Working 50 minutes, she earned 0.2 x 50 = $10."],
        "The wallet costs $100. Betty has half. Her parents give $15 and her grandparents twice as much.":
            ["Betty has only 100 / 2 = $50.", "Her grandparents gave her 15 * 2 = $30.",
             "Betty needs 100 - 50 - 30 - 15 = $5 more."],
        "Tom reads 4 pages a day. The book has 120 pages.":
            ["There are 7 days in a week, so he reads 7 × 4 = 28 pages a week.", "120/28 ≈ 4.29 weeks",
             "That is 120 ÷ 28 = 4.2857 weeks."],
        "A car travels 150 km in 2.5 hours.":
            ["Speed = 150 / 2.5 = 60 km/h", "In 4 hours it goes 60 × 4 = 240 km."],
        "Tim has 15 marbles, loses 4, then finds 6.": ["1) 15 - 4 = 11", "2) 11 + 6 = 17"],
        "A shirt costs $25 and is 20% off.":
            ["The discount is 20% × 25 = $5.", "The price is $25 - $5 = $20.", r"So \frac{4}{5} \cdot 25 = 20."],
    }
    for question, steps in solutions.items():
        assert "contradicted" not in verdicts(question, steps), (question, verdicts(question, steps))


def test_code_in_a_step_is_not_read_as_claims_unless_run():
    step = "```python\nx = 70 + 99 + 70\nprint(x)\n```\nThe total is 239."
    assert verdicts("Add 70, 99 and 70.", [step]) == ["not_checkable"]


@pytest.mark.slow
def test_code_blocks_run_in_the_sandbox_and_their_output_must_match_the_step():
    config = ToolVerifyConfig(run_code=True, sandbox=SandboxConfig())
    good = "```python\nprint(70 + 99 + 70)\n```\nThe total is 239."
    bad = "```python\nprint(70 + 99 + 70)\n```\nThe total is 238."
    assert verdicts("Add 70, 99 and 70.", [good, bad], config) == ["verified", "contradicted"]


def test_hostile_expressions_are_refused_not_evaluated():
    with pytest.raises(ArithError):
        parse_expression("9^9^9^9")
    with pytest.raises(ArithError):
        parse_expression("__import__('os').system('echo hi')")
    assert extract_chains("__import__('os').system('true') = 0") == []
    assert verdicts("q", ["9^9^9^9 = 1", "1/0 = 5", "().__class__ = 3"]) == ["not_checkable"] * 3


@pytest.mark.slow
def test_on_synthetic_rollouts_arithmetic_errors_are_caught_with_at_most_one_percent_false_alarms():
    rollouts = sim_rollouts(300, per_problem=8, error_rate=0.3, seed=1, difficulty=(2, 6))
    labels = label_tool_verify([r.solution for r in rollouts])
    by_step = {(l.rollout_id, l.step_index): verdict_of(l) for l in labels}
    caught, injected = Counter(), Counter()
    false_alarms = correct_steps = 0
    for r in rollouts:
        for i in range(len(r.solution.steps)):
            v = by_step[(r.solution.rollout_id, i)]
            if r.step_is_good(i):
                correct_steps += 1
                false_alarms += v == "contradicted"
            elif i == r.true_first_error:
                kind = error_kind(problem_of(r.solution), r.solution.steps, i)
                kind += "" if i > 0 else "@step0"  # a wrong start value is a misread question
                injected[kind] += 1
                caught[kind] += v == "contradicted"
    assert injected["arithmetic"] + injected["arithmetic@step0"] > 500 and correct_steps > 3000
    arithmetic = caught["arithmetic"] + caught["arithmetic@step0"]
    assert arithmetic / (injected["arithmetic"] + injected["arithmetic@step0"]) >= 0.95
    assert false_alarms / correct_steps <= 0.01
    assert caught["copy"] / injected["copy"] >= 0.7  # previous result copied wrongly: carried-value check
    assert all(l.calls == 0 and l.prompt_tokens == 0 for l in labels)


def test_verification_never_calls_eval_or_exec(monkeypatch):
    import builtins

    def guard(original):
        def guarded(source, *args, **kwargs):
            if isinstance(source, (str, bytes)):  # code objects are module imports, not text
                raise AssertionError(f"{original.__name__} called on text: {source!r}")
            return original(source, *args, **kwargs)
        return guarded

    monkeypatch.setattr(builtins, "eval", guard(builtins.eval))
    monkeypatch.setattr(builtins, "exec", guard(builtins.exec))
    steps = ["70+99+70=238", r"\frac{1}{2} \cdot 4 = 2", "x = 5", "2x + 3 = 13", "10/3 ≈ 3.33"]
    assert verdicts("Solve 2x + 3 = 13.", steps) == [
        "contradicted", "verified", "verified", "verified", "verified"]


# --------------------------------------------------------------- notation of real solutions (issue 14)
def claims(question: str, step: str) -> set[str]:
    label = verify_solution(Solution("p", "r", question, (step,)))[0]
    return {c["claim"] for c in label.evidence["checks"] if c["check"] in ("arithmetic", "identity")}


@pytest.mark.parametrize("step, verdict, checked", [
    ("x_6+y_6+z_6=70+99+70=239", "verified", {"70 + 99 + 70 = 239"}),  # not `6 = 70+99+70`
    ("x_6+y_6+z_6=70+99+70=238", "contradicted", {"70 + 99 + 70 = 238"}),
    ("From the recursion, a_(n+1) = 2a_n + 1.", "not_checkable", set()),
    ("100+99+...+1=(100+1)*100/2=5050", "verified", {"(100 + 1) * 100 / 2 = 5050"}),  # never `1 = ...`
    ("So 3^105+4^105 mod 11 = 3^5+4^5 mod 11 = 2.", "not_checkable", set()),
    ("There are 8 choose 3 = 56 of them.", "verified", {"8 choose 3 = 56"}),
    ("There are 8 choose 3 = 24 of them.", "contradicted", {"8 choose 3 = 24"}),
    (r"$\binom{8}{3} = 56$", "verified", {"binom((8),(3)) = 56"}),  # not 8·3
    (r"$\binom{8}{3} = 24$", "contradicted", {"binom((8),(3)) = 24"}),
    ("sqrt(6+3)=3", "verified", {"sqrt(6 + 3) = 3"}),  # the root is not dropped
    (r"$\sqrt{6+3} = 9$", "contradicted", {"sqrt((6 + 3)) = 9"}),
    ("Since |i| = 1, we have f(z) = 1.", "not_checkable", set()),
    ("Then q(x) = 5 and r'(1) = 0.", "not_checkable", set()),
    ("So the expression is 5x(x+1)^2 = 5x^3 + 10x^2 + 5x.", "not_checkable", set()),  # x( : function or product?
    ("10^k*d+r=(20*10^15-2)/17", "not_checkable", set()),  # never trimmed to `r = ...`
    ("Then 2bcd8*4=8dcb2.", "not_checkable", set()),
    ("- 1 + 5 = 6", "verified", {"1 + 5 = 6"}),  # a markdown bullet, not -1 + 5
    ("* 23 - 4 = 19", "verified", {"23 - 4 = 19"}),
    ("The area is 10² = 100 cm².", "verified", {"10^2 = 100"}),
    ("Two operands side by side: x_1 x_2 = 12 and 2 3 = 6.", "not_checkable", set()),
    ("He walked 3 feet = 36 inches.", "not_checkable", set()),  # a unit conversion, not 3 = 36
    ("1 hour = 60 minutes, so 3 hours = 3 * 60 = 180 minutes.", "verified", {"3 * 60 = 180"}),  # not 3 = 3 * 60
    ("So 2^10 = 1024 ≈ 10^3.", "verified", {"2^10 = 1024", "1024 ≈ 10^3"}),  # one significant digit written
    ("20% of 50 = 10", "not_checkable", set()),
])
def test_notation_of_real_solutions_is_read_whole_or_not_at_all(step, verdict, checked):
    assert verdicts("q", [step]) == [verdict]
    assert claims("q", step) == checked


def test_a_latex_side_the_two_parsers_read_differently_is_not_checked():
    step = r"Plug in $x = 7$: $g(7) = 3(7) - 4 = 21 - 4 = 17$."
    label = verify_solution(Solution("p", "r", "If g(x) = 3x - 4, find g(7).", (step,)))[0]
    assert verdict_of(label) == "verified"
    assert claims("q", step) == {"21 - 4 = 17"}
    [disputed] = [c for c in label.evidence["checks"] if c["check"] == "parsers_disagree"]
    assert disputed["sides"] == [{"side": "3(7) - 4", "this_parser": "17", "latex2sympy": "6"}]


# --------------------------------------------------------------- scoping of values
def test_a_candidate_that_is_tried_is_neither_substituted_nor_carried():
    q = "Find the positive integer y with y^2 + y = 6."
    steps = ["Now try y = 1: 1 + 1 = 2, which is not 6.", "Try y = 2: 4 + 2 = 6. This works.", "So y = 2."]
    labels = verify_solution(Solution("p", "r", q, tuple(steps)))
    assert [verdict_of(l) for l in labels] == ["verified", "verified", "verified"]
    assert not any(c["check"] == "substitution" for l in labels[:2] for c in l.evidence["checks"])


def test_an_equation_refuted_for_one_case_is_not_contradicted():
    step = "For d=2, 2*2 + 3 = 7 and 3*2 + 52 = 58, neither is 61, so there is no positive integer solution."
    assert verdicts("Find d with 2d + 3 = 61 or 3d + 52 = 61.", [step]) == ["verified"]


def test_values_of_one_listed_solution_are_not_used_for_another():
    q = "Find all pairs of positive integers (a, b) with a + b = 3."
    steps = ["The first solution is a = 1, b = 2.", "The second solution is a = 2, b = 1.", "For the first, a - b = -1."]
    assert "contradicted" not in verdicts(q, steps)


def test_values_of_one_case_do_not_leak_into_the_next():
    steps = ["Case 1: x >= 0. Then x = 2.", "Case 2: x < 0. Then x = -2.", "Check: (-2)^2 = 4 and x + 2 = 0."]
    assert "contradicted" not in verdicts("Solve |x| = 2.", steps)


def test_suppositions_are_not_substituted():
    steps = ["Suppose x = 4. Then y = 6 and x - y = -2, not 0.", "Suppose x = 5. Then y = 5 and x - y = 0."]
    labels = verify_solution(Solution("p", "r", "x + y = 10 and x - y = 0. Find x.", tuple(steps)))
    assert not any(c["check"] == "substitution" for l in labels for c in l.evidence["checks"])
    assert [verdict_of(l) for l in labels] == ["not_checkable", "not_checkable"]


def test_the_typo_check_is_silent_while_candidates_are_tried():
    steps = ["Try n = 9: 9^2 = 81.", "Try n = 8: 8^2 = 64.", "So n = 9 is the largest with n^2 <= 81."]
    labels = verify_solution(Solution("p", "r", "Find the largest n with n^2 <= 81.", tuple(steps)))
    assert [verdict_of(l) for l in labels][:2] == ["verified", "verified"]
    assert not any(c["check"] == "carried_value" for l in labels for c in l.evidence["checks"])


def test_alternative_roots_are_each_put_back_into_the_equation():
    labels = verify_solution(Solution("p", "r", "Find x.", ("We get x^2 - 5x + 6 = 0.", "So x = 2 or x = 3.")))
    subs = [c for c in labels[1].evidence["checks"] if c["check"] == "substitution"]
    assert [c["values"] for c in subs] == [{"x": "2"}, {"x": "3"}] and all(c["ok"] for c in subs)


# --------------------------------------------------------------- the confidence contract with aggregation
def test_only_an_exact_fully_parsed_contradiction_has_confidence_one():
    def confidence(question, steps):
        return verify_solution(Solution("p", "r", question, tuple(steps)))[-1].confidence

    assert confidence("q", ["6 * 7 = 48"]) == 1.0
    assert confidence("Solve 2x + 3 = 13.", ["So x = 6."]) < 1.0  # substitution
    assert confidence("q", ["10/3 ≈ 4"]) < 1.0  # written as approximate
    assert confidence("Tim has 15 marbles and loses 4.", ["15 - 4 = 11", "12 + 6 = 18"]) < 1.0  # carried value
    assert confidence("q", ["Let x = 5.", "Then 2x + 1 = 12."]) < 1.0  # uses a substituted value


@pytest.mark.parametrize("step", [
    "Wait, 6 * 7 = 48 is wrong; 6 * 7 = 42.",  # a self-correction
    "Modulo 11, 3^5 = 1 and 4^5 = 1.",  # `=` means congruent
    "243 = 1 (mod 11), so the remainder is 1.",
])
def test_refutations_and_congruences_are_not_contradicted(step):
    assert verdicts("q", [step]) != ["contradicted"]


def test_an_algebra_step_that_multiplies_an_earlier_equation_through_is_verified_never_contradicted():
    labels = verify_solution(Solution("p", "r", "Solve 3s + 5 = 2(s + 5).", (
        "Expanding, 3s + 5 = 2s + 10.", "A new fact: s + t = 9.")))
    [check] = [c for c in labels[0].evidence["checks"] if c["check"] == "equivalent_equation"]
    assert check["follows_from"] == "3s + 5 = 2(s + 5)" and check["ok"] is True
    assert [verdict_of(l) for l in labels] == ["verified", "not_checkable"]


def test_equations_a_question_offers_as_alternatives_confirm_a_value_but_never_refute_it():
    q = "For which digit d is 2d + 3 = 61 or 3d + 52 = 61?"
    label = verify_solution(Solution("p", "r", q, ("So d = 3.",)))[0]
    subs = {c["claim"]: c["ok"] for c in label.evidence["checks"] if c["check"] == "substitution"}
    assert subs == {"2d + 3 = 61": None, "3d + 52 = 61": True} and verdict_of(label) == "verified"
