"""A synthetic policy and judge with known ground truth (for tests and benchmarks).

This is *not* a language model. It is a test instrument, so every assumption
it makes is a named parameter of `SimBackend`, and `SimBackend.assumptions()`
returns them so that every figure measured on it can be reported with them.

Policy (`sim-policy`, `sim-completer`, any model without "judge" in its name)
solves bundled bank problems (prm_data/sources/bank.py) step by step:

- `error_rate`: probability of an error at each step: wrong arithmetic (the
  result is off), wrong operand (a different number is used, arithmetic
  right), or a copied-wrong number (the previous result is copied wrongly).
  Later steps carry the wrong value forward.
- `solve_rate` (optional; replaces `error_rate`): the chance of solving a
  problem from scratch; the per-step error rate is set so that a solution of
  the problem's n steps ends right that often, cancellations included
  (`step_error_rate`). This is how a completer weaker (or stronger) than the
  policy is set.
- `cancel_rate`: the probability that an error is undone by the next step (a
  compensating slip or a re-read of the question lands the running value back
  on the true one), so a wrong prefix can still reach the gold answer, as real solutions do (ProcessBench, arXiv 2412.06559, finds
  process errors in many correct-answer solutions). 0 restores the strict
  "an error is never undone" world, in which every wrong prefix has Monte
  Carlo value exactly 0 (what first-error binary search assumes).

It continues from any assistant prefix, reading the running value from the
prefix's last equation, and records the true first error (0-based, over the
whole solution including the prefix; -1 when there is none) in
`Sample.metadata["true_first_error"]`.

Coder (`sim-coder`, any model with "coder" in its name) writes code-bank
solutions with injected bugs of known kind and place: prm_data/llm/sim_code.py,
whose parameters are `coder` (`SimCoderParams`).

Judge (`sim-judge*`) grades solutions rendered with `<question>` and
`<step_i>` tags: per step ("step_i: correct|incorrect") or ProcessBench-style
("\\boxed{k}", the earliest wrong step, -1 for none):

- `judge_accuracy`: the probability that a verdict is right;
- `judge_correlation`: the share of verdicts decided by the step's shared
  difficulty (a draw keyed by the question and the step text, the same for
  every judge and every sample) instead of the judge's own draw, so judges
  err on the same hard steps (0 = independent judges);
- `rubric_adherence`: with a `<rubric>` in the prompt, the probability that
  the judge checks a step against the rubric's hard rule for that step's
  operation ("... must compute a op b = c", matched by the problem's operation
  and operand) and takes the rule's verdict. A rubric that states the right
  computation therefore helps, one with a wrong rule misleads, and one with no
  rule for this problem (irrelevant, or principles only) changes nothing;
- `fooled_rate`: the probability that a solution with no checkable step (the
  judge-hacking probes, "One Token to Fool LLM-as-a-Judge", arXiv 2507.08794)
  is accepted as all correct; otherwise it is rejected.

Asked for a rubric, the judge writes one from the problem's true chain.

Every sample is a pure function of (request, sample index), so reruns and
caches behave exactly as with a seeded real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from dataclasses import dataclass

from prm_data.llm.sim_code import SimCoder, SimCoderParams
from prm_data.llm.tokens import count_tokens  # noqa: F401  (serve_sim and tests import it from here)
from prm_data.llm.types import GenerationRequest, Sample
from prm_data.sources.bank import BankProblem, apply_op, parse_question

EQUATION = re.compile(r"(-?\d+)\s*([+\-*/×x÷])\s*(-?\d+)\s*=\s*(-?\d+)")
_OP_NORMAL = {"×": "*", "x": "*", "÷": "/"}
STEP_TAG = re.compile(r"<step_(\d+)>(.*?)</step_\1>", re.S)
QUESTION_TAG = re.compile(r"<question>(.*?)</question>", re.S)
_LABEL = re.compile(r"^(?:problem|question)\s*:\s*", re.I)


def parse_equation(step: str) -> tuple[int, str, int, int] | None:
    """The last `a op b = c` in a step, or None."""
    found = EQUATION.findall(step)
    if not found:
        return None
    a, op, b, c = found[-1]
    return int(a), _OP_NORMAL.get(op, op), int(b), int(c)


def true_first_error(problem: BankProblem, steps: list[str]) -> int:
    """Index of the first wrong step of `steps` for `problem`; -1 if all are right.

    A step is right when its equation uses the true running value, the true
    operation and operand, and computes the result correctly. Extra steps past
    the chain, or a missing equation, count as errors.
    """
    values = problem.values()
    for i, step in enumerate(steps):
        eq = parse_equation(step)
        if eq is None or i >= len(problem.ops):
            return i
        a, op, b, c = eq
        o = problem.ops[i]
        if a != values[i] or op != o.op or b != o.operand or c != apply_op(a, op, b):
            return i
    return -1


def split_blank_lines(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"\n\s*\n", text) if s.strip()]


@dataclass
class SimBackend:
    """The synthetic backend. `model` picks the role: a judge when it contains "judge", else a policy.

    Defaults are the realistic side of each assumption: errors can cancel, judges' errors are
    correlated, a rubric helps only through what it says, and probes fool no judge by default.
    """

    model: str = "sim-policy"
    error_rate: float = 0.15
    solve_rate: float | None = None
    cancel_rate: float = 0.05
    judge_accuracy: float = 0.7
    judge_correlation: float = 0.5
    rubric_adherence: float = 0.5
    fooled_rate: float = 0.0
    latency_s: float = 0.0
    name: str = "sim"
    coder: SimCoderParams | None = None  # the code simulator's assumptions (model "sim-coder"); None: defaults

    def __post_init__(self) -> None:
        for field_name in ("error_rate", "cancel_rate", "judge_accuracy", "judge_correlation",
                           "rubric_adherence", "fooled_rate"):
            if not 0.0 <= getattr(self, field_name) <= 1.0:
                raise ValueError(f"SimBackend.{field_name} must be in [0, 1], got {getattr(self, field_name)}")
        if self.solve_rate is not None and not 0.0 < self.solve_rate <= 1.0:
            raise ValueError(f"SimBackend.solve_rate must be in (0, 1], got {self.solve_rate}")
        if self.coder is None:
            self.coder = SimCoderParams()

    @property
    def is_judge(self) -> bool:
        return "sim-judge" in self.model or self.model.startswith("judge")

    @property
    def is_coder(self) -> bool:
        return not self.is_judge and "coder" in self.model

    def assumptions(self) -> dict:
        """The simulator's assumptions that this role's answers depend on (report them with every figure)."""
        if self.is_coder:
            return SimCoder(self.coder, self.model).assumptions()
        if self.is_judge:
            keys = ("judge_accuracy", "judge_correlation", "rubric_adherence", "fooled_rate")
        else:
            keys = ("solve_rate", "cancel_rate") if self.solve_rate is not None else ("error_rate", "cancel_rate")
        return {"model": self.model, **{k: getattr(self, k) for k in keys}}

    def step_error_rate(self, problem: BankProblem) -> float:
        """Per-step error probability on `problem` (from `solve_rate` when it is set).

        With `solve_rate`, the rate at which a solution of the problem's n steps, started from
        scratch, ends on the true answer is `solve_rate`, cancellations counted (bisection on
        the exact recursion; the floor is the rate at which every step errs).
        """
        if self.solve_rate is None:
            return self.error_rate
        n, lo, hi = len(problem.ops), 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if solve_probability(n, mid, self.cancel_rate) > self.solve_rate:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    async def generate_one(self, request: GenerationRequest, sample_index: int) -> Sample:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        key = request.sample_key(self.name, self.model, sample_index)
        text, meta = self.complete(request, key)
        prompt = "\n".join(m.content for m in request.messages) + (request.assistant_prefix or "")
        return Sample(text=text, finish_reason="stop", prompt_tokens=count_tokens(prompt),
                      completion_tokens=count_tokens(text), latency_s=self.latency_s,
                      request_key=key, metadata=meta)

    # The pure part, shared with the HTTP test server.
    def complete(self, request: GenerationRequest, key: str) -> tuple[str, dict]:
        rng = random.Random(key)
        user = "\n".join(m.content for m in request.messages if m.role == "user")
        if self.is_judge:
            return self._judge(user, rng)
        if self.is_coder:
            return SimCoder(self.coder, self.model).complete(user, request.assistant_prefix or "", rng)
        return self._solve(user, request.assistant_prefix or "", rng)

    # ------------------------------------------------------------------ policy
    def _solve(self, user: str, prefix: str, rng: random.Random) -> tuple[str, dict]:
        problem = _find_problem(user)
        if problem is None:
            return "I cannot solve this problem.", {"true_first_error": 0, "reason": "not a bank problem"}
        prefix_steps = split_blank_lines(prefix)
        values = problem.values()
        if prefix_steps:
            eq = parse_equation(prefix_steps[-1])
            value = eq[3] if eq else values[min(len(prefix_steps), len(values) - 1)]
        else:
            value = problem.start
        first_error = true_first_error(problem, prefix_steps)
        error_rate = self.step_error_rate(problem)
        wrong = first_error != -1
        out: list[str] = []
        just_erred = _last_step_went_off_track(problem, prefix_steps)
        for i in range(len(prefix_steps), len(problem.ops)):
            o = problem.ops[i]
            before, operand = value, o.operand
            off_track = value != values[i]
            if just_erred and rng.random() < self.cancel_rate:
                # the error just made is undone: either the true value is re-read (a copy that differs
                # from the previous result) or a compensating slip lands the result on the true one
                if rng.random() < 0.5:
                    before = values[i]
                    result = apply_op(before, o.op, operand)
                else:
                    result = values[i + 1]
            elif rng.random() < error_rate:
                before, operand, result = self._inject_error(rng, before, o.op, operand)
            else:
                result = apply_op(before, o.op, operand)
            wrong = wrong or off_track or (before, operand) != (values[i], o.operand) \
                or result != apply_op(before, o.op, operand)
            if self.cancel_rate == 0 and wrong and result == values[i + 1]:
                # strict world: an error that lands back on the true value (a later error, or the floor
                # of an integer division) becomes a slip that keeps it wrong
                result += 1
            just_erred = not off_track and result != values[i + 1]
            is_final = i == len(problem.ops) - 1
            out.append(problem.step_text(i, before, operand, result, is_final))
            value = result
        if not out:  # the prefix already holds every step: just state the answer
            out.append(f"The answer is \\boxed{{{value}}}.")
        if first_error == -1:
            first_error = true_first_error(problem, prefix_steps + out[: len(problem.ops) - len(prefix_steps)])
        sep = "" if not prefix or prefix.endswith("\n\n") else "\n\n"
        return sep + "\n\n".join(out), {"true_first_error": first_error, "answer": value}

    @staticmethod
    def _inject_error(rng: random.Random, before: int, op: str, operand: int) -> tuple[int, int, int]:
        kind = rng.choice(["arithmetic", "operand", "copy"])
        if kind == "operand" and op != "/":
            wrong = max(1, operand + rng.choice([-2, -1, 1, 2]))
            if wrong != operand:
                return before, wrong, apply_op(before, op, wrong)
        if kind == "copy" and op != "/":
            wrong = max(0, before + rng.choice([-2, -1, 1, 2, 10]))
            if wrong != before:
                return wrong, operand, apply_op(wrong, op, operand)
        right = apply_op(before, op, operand)
        return before, operand, max(0, right + rng.choice([-3, -2, -1, 1, 2, 3, 10])) if right > 3 else right + rng.choice([1, 2, 10])

    # ------------------------------------------------------------------- judge
    def _errs(self, rng: random.Random, accuracy: float, *shared_key: object) -> bool:
        """Whether one verdict is wrong: decided by the shared difficulty of `shared_key` or by own chance."""
        u = shared_uniform(*shared_key) if rng.random() < self.judge_correlation else rng.random()
        return u >= accuracy

    def _judge(self, user: str, rng: random.Random) -> tuple[str, dict]:
        problem = _find_problem(user)
        steps = [s for _, s in sorted(((int(i), s.strip()) for i, s in STEP_TAG.findall(user)))]
        if not steps:
            if "rubric" in user.lower() and problem is not None:
                return _rubric_for(problem), {}
            return "I cannot find the solution steps.", {}
        question = m.group(1) if (m := QUESTION_TAG.search(user)) else ""
        truth = true_first_error(problem, steps) if problem else 0
        rule_verdicts = _rubric_verdicts(user, problem, steps)
        checkable = any(parse_equation(s) for s in steps)
        first_error_format = re.search(r"earliest|first (wrong|incorrect|error)", user, re.I)
        if not checkable:  # degenerate solution: the judge-hacking probes land here
            fooled = rng.random() < self.fooled_rate
            truth = -1 if fooled else 0
            meta = {"true_first_error": truth, "fooled": fooled}
            if first_error_format:
                return f"The earliest wrong step is \\boxed{{{truth}}}.", meta
            return "\n".join(f"step_{i}: {'correct' if fooled else 'incorrect'}" for i in range(len(steps))), meta
        meta = {"true_first_error": truth}
        if first_error_format:
            ruled = _first_error_by_rules(rule_verdicts, len(steps))
            if ruled is not None and rng.random() < self.rubric_adherence:
                answer = ruled
            else:
                answer = truth
                if self._errs(rng, self.judge_accuracy, "first_error", question, *steps):
                    shared = random.Random(f"{shared_uniform('wrong', question, *steps)}")
                    pick = shared if rng.random() < self.judge_correlation else rng
                    answer = pick.choice([k for k in range(-1, len(steps)) if k != truth])
            return f"The earliest wrong step is \\boxed{{{answer}}}.", meta
        lines = []
        for i, step in enumerate(steps):
            if i in rule_verdicts and rng.random() < self.rubric_adherence:
                good = rule_verdicts[i]
            else:
                good = truth == -1 or i < truth
                if self._errs(rng, self.judge_accuracy, "step", question, i, step):
                    good = not good
            lines.append(f"step_{i}: {'correct' if good else 'incorrect'}")
        return "\n".join(lines), meta


def solve_probability(steps: int, error_rate: float, cancel_rate: float) -> float:
    """Chance that a solution of `steps` steps ends on the true value (each error undone by the next step
    with `cancel_rate`; coincidences ignored)."""
    on, just_off = 1.0, 0.0
    for _ in range(steps):
        back = just_off * cancel_rate
        on, just_off = on * (1 - error_rate) + back, on * error_rate
    return on


def _last_step_went_off_track(problem: BankProblem, prefix_steps: list[str]) -> bool:
    """Whether the prefix's last step took a true running value to a wrong one (an error it may undo next)."""
    if not prefix_steps or len(prefix_steps) > len(problem.ops):
        return False
    values = problem.values()
    results = [eq[3] if (eq := parse_equation(step)) else None for step in prefix_steps]
    before = values[0] if len(results) == 1 else results[-2]
    return before == values[len(results) - 1] and results[-1] != values[len(results)]


def shared_uniform(*parts: object) -> float:
    """A uniform draw in [0, 1) fixed by `parts` alone: the same for every judge that sees them."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


RUBRIC_TAG = re.compile(r"<rubric>(.*?)</rubric>", re.S)


def _rubric_verdicts(user: str, problem: BankProblem | None, steps: list[str]) -> dict[int, bool]:
    """step index -> the verdict of the rubric's hard rule for that step (steps without one are absent).

    The rubric is about this problem when its first "... must compute a op b = c" rule starts from
    the question's start value; its i-th such rule is then the rule for step i when it names the
    problem's i-th operation and operand. A step passes its rule when its equation is the rule's.
    """
    m = RUBRIC_TAG.search(user)
    if m is None or problem is None:
        return {}
    rules = [eq for line in m.group(1).splitlines() if "compute" in line and (eq := parse_equation(line))]
    if not rules or rules[0][0] != problem.start:
        return {}
    out = {}
    for i, (step, rule) in enumerate(zip(steps, rules)):
        if i < len(problem.ops) and (rule[1], rule[2]) == (problem.ops[i].op, problem.ops[i].operand):
            out[i] = parse_equation(step) == rule
    return out


def _first_error_by_rules(verdicts: dict[int, bool], n_steps: int) -> int | None:
    """The earliest step the rubric's rules reject (-1: all pass); None unless rules cover every step up to it."""
    for i in range(n_steps):
        if i not in verdicts:
            return None
        if not verdicts[i]:
            return i
    return -1


def _find_problem(user: str) -> BankProblem | None:
    m = QUESTION_TAG.search(user)
    candidates = [m.group(1)] if m else []
    candidates.append(user)
    for text in candidates:
        p = parse_question(text.strip())
        if p is not None:
            return p
        # the question may be embedded in a longer prompt ("Problem: ..." in solve.v1): try each
        # line, last first, since few-shot prompts show their example questions before it
        for para in reversed(re.split(r"\n+", text)):
            p = parse_question(_LABEL.sub("", para.strip()))
            if p is not None:
                return p
    return None


def _rubric_for(problem: BankProblem) -> str:
    values = problem.values()
    rules = [f"- The solution must compute {values[i]} {o.op} {o.operand} = {values[i + 1]}."
             for i, o in enumerate(problem.ops)]
    rules.append(f"- The final answer must be {problem.answer}.")
    principles = ["- Show every operation as an equation.",
                  "- Carry each result into the next step without changing it."]
    return "Hard rules:\n" + "\n".join(rules) + "\nPrinciples:\n" + "\n".join(principles)
