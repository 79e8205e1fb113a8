"""A synthetic policy and judge with known ground truth (for tests and benchmarks).

This is *not* a language model. It exists so that every labeler can be
measured against the truth:

- `sim-policy` solves bundled bank problems (prm_data/sources/bank.py) step by
  step. At each step it makes an error with probability `error_rate`: wrong
  arithmetic (the result is off), wrong operand (a different number is used,
  arithmetic right), or a copied-wrong number (the previous result is copied
  wrongly). Later steps carry the wrong value forward consistently. It
  continues from any assistant prefix, reading the running value from the
  prefix's last equation, and records the true first error (0-based, over the
  whole solution including the prefix; -1 when there is none) in
  `Sample.metadata["true_first_error"]`. An error is never undone by a later
  one, so a prefix containing an error never reaches the gold answer (its
  Monte Carlo value is exactly 0, as first-error search assumes).
- `sim-judge` grades solutions rendered with `<question>` and `<step_i>` tags:
  per step ("step_i: correct|incorrect") or ProcessBench-style ("\\boxed{k}",
  the earliest wrong step, -1 for none), each verdict right with probability
  `judge_accuracy` (+ `rubric_bonus` when a `<rubric>` is given). A solution
  with no checkable step is always rejected by an honest judge and always
  accepted by a `hackable` one (see "One Token to Fool LLM-as-a-Judge").
  Asked for a rubric, it writes one from the problem's true chain.

Every sample is a pure function of (request, sample index), so reruns and
caches behave exactly as with a seeded real server.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass

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
    """The synthetic backend. `model` picks the role: "sim-policy" or "sim-judge"."""

    model: str = "sim-policy"
    error_rate: float = 0.15
    judge_accuracy: float = 0.7
    rubric_bonus: float = 0.1
    hackable: bool = False
    latency_s: float = 0.0
    name: str = "sim"

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
        if "sim-judge" in self.model or self.model.startswith("judge"):
            return self._judge(user, rng)
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
        wrong = first_error != -1
        out: list[str] = []
        for i in range(len(prefix_steps), len(problem.ops)):
            o = problem.ops[i]
            before, operand = value, o.operand
            if rng.random() < self.error_rate:
                before, operand, result = self._inject_error(rng, before, o.op, operand)
                wrong = True
            else:
                result = apply_op(before, o.op, operand)
            if wrong and result == values[i + 1]:
                # An error once made is never undone: a later error (or the floor of an integer
                # division) that lands back on the true value becomes a slip that keeps it wrong,
                # so every prefix containing an error has Monte Carlo value exactly 0.
                result += 1
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
    def _judge(self, user: str, rng: random.Random) -> tuple[str, dict]:
        problem = _find_problem(user)
        steps = [s for _, s in sorted(((int(i), s.strip()) for i, s in STEP_TAG.findall(user)))]
        if not steps:
            if "rubric" in user.lower() and problem is not None:
                return _rubric_for(problem), {}
            return "I cannot find the solution steps.", {}
        truth = true_first_error(problem, steps) if problem else 0
        checkable = any(parse_equation(s) for s in steps)
        if not checkable:  # degenerate solution: the judge-hacking probes land here
            truth = -1 if self.hackable else 0
            accuracy = 1.0
        else:
            accuracy = min(1.0, self.judge_accuracy + (self.rubric_bonus if "<rubric>" in user else 0.0))
        meta = {"true_first_error": truth}
        if re.search(r"earliest|first (wrong|incorrect|error)", user, re.I):
            answer = truth
            if rng.random() >= accuracy:
                answer = rng.choice([k for k in range(-1, len(steps)) if k != truth])
            return f"The earliest wrong step is \\boxed{{{answer}}}.", meta
        lines = []
        for i in range(len(steps)):
            good = truth == -1 or i < truth
            if rng.random() >= accuracy:
                good = not good
            lines.append(f"step_{i}: {'correct' if good else 'incorrect'}")
        return "\n".join(lines), meta


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
