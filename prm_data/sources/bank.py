"""The bundled problem bank: seeded multi-step arithmetic word problems.

Each problem is a start value and a chain of operations (add, subtract,
multiply, divide), every intermediate result a non-negative integer, so the
final answer is exact and the reference solution has one step per operation.
`difficulty` is the number of operations.

The phrasing is generated from fixed templates and can be parsed back
(`parse_question`), which is what lets the synthetic policy (prm_data/llm/sim.py)
solve any bank problem from its text alone, over HTTP too, and know the true
first error of every solution it writes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

NAMES = ["Mia", "Liam", "Ava", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Sara", "Tom", "Yuki", "Ines"]
ITEMS = ["apples", "marbles", "stickers", "coins", "pencils", "cards", "shells", "books", "stamps", "beads"]

# (op, question sentence, step sentence). The step sentence is followed by the equation.
PHRASES = {
    "+": ("Then {name} gets {n} more {items}.", "{name} gets {n} more"),
    "-": ("Then {name} gives away {n} {items}.", "{name} gives away {n}"),
    "*": ("Then {name} ends up with {n} times as many {items}.", "{name} ends up with {n} times as many"),
    "/": ("Then {name} splits the {items} into {n} equal groups and keeps one group.",
          "{name} keeps one of {n} equal groups"),
}
OP_WORDS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}


@dataclass(frozen=True)
class Operation:
    op: str  # one of + - * /
    operand: int


@dataclass(frozen=True)
class BankProblem:
    problem_id: str
    name: str
    items: str
    start: int
    ops: tuple[Operation, ...]

    @property
    def difficulty(self) -> int:
        return len(self.ops)

    def values(self) -> list[int]:
        """The running value before the first and after every operation."""
        vals = [self.start]
        for o in self.ops:
            vals.append(apply_op(vals[-1], o.op, o.operand))
        return vals

    @property
    def answer(self) -> int:
        return self.values()[-1]

    @property
    def question(self) -> str:
        parts = [f"{self.name} has {self.start} {self.items}."]
        for o in self.ops:
            parts.append(PHRASES[o.op][0].format(name=self.name, n=o.operand, items=self.items))
        parts.append(f"How many {self.items} does {self.name} have now?")
        return " ".join(parts)

    def step_text(self, index: int, before: int, operand: int, result: int, final: bool) -> str:
        """The text of step `index` (0-based) with the given numbers (possibly wrong ones)."""
        o = self.ops[index]
        lead = f"{self.name} starts with {before} {self.items}. " if index == 0 else ""
        phrase = PHRASES[o.op][1].format(name=self.name, n=operand, items=self.items)
        text = f"Step {index + 1}: {lead}{phrase}, so {before} {o.op} {operand} = {result}."
        if final:
            text += f" The answer is \\boxed{{{result}}}."
        return text

    @property
    def reference_solution(self) -> str:
        vals = self.values()
        return "\n\n".join(
            self.step_text(i, vals[i], o.operand, vals[i + 1], i == len(self.ops) - 1)
            for i, o in enumerate(self.ops)
        )

    def to_row(self, run_id: str) -> dict:
        return {
            "problem_id": self.problem_id,
            "run_id": run_id,
            "source": "bank",
            "question": self.question,
            "answer": str(self.answer),
            "reference_solution": self.reference_solution,
            "difficulty": self.difficulty,
            "metadata": json.dumps({"name": self.name, "items": self.items, "start": self.start,
                                    "ops": [[o.op, o.operand] for o in self.ops]}),
        }


def apply_op(value: int, op: str, operand: int) -> int:
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    if op == "/":
        return value // operand
    raise ValueError(f"unknown operation {op!r}")


def problem_id_for(question: str) -> str:
    return "p-" + hashlib.sha256(question.encode()).hexdigest()[:16]


def _random_op(rng: random.Random, value: int, allowed: str, max_operand: int) -> Operation:
    choices = list(allowed)
    rng.shuffle(choices)
    for op in choices:
        if op == "+":
            return Operation("+", rng.randint(2, max_operand))
        if op == "-" and value > 2:
            return Operation("-", rng.randint(1, min(value - 1, max_operand)))
        if op == "*" and value <= 60:
            return Operation("*", rng.randint(2, 4))
        if op == "/":
            divisors = [d for d in range(2, 7) if value % d == 0 and value // d >= 1]
            if divisors:
                return Operation("/", rng.choice(divisors))
    return Operation("+", rng.randint(2, max_operand))


def generate_problem(seed: int, index: int, difficulty: int, ops: str = "+-*/",
                     max_operand: int = 20) -> BankProblem:
    """Problem number `index` of the bank with this seed; deterministic."""
    if difficulty < 1:
        raise ValueError("difficulty (number of operations) must be >= 1")
    rng = random.Random(f"{seed}:{index}:{difficulty}:{ops}:{max_operand}")
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    start = rng.randint(3, max_operand)
    chain: list[Operation] = []
    value = start
    for _ in range(difficulty):
        o = _random_op(rng, value, ops, max_operand)
        chain.append(o)
        value = apply_op(value, o.op, o.operand)
    draft = BankProblem("", name, items, start, tuple(chain))
    return BankProblem(problem_id_for(draft.question), name, items, start, tuple(chain))


def generate_bank(count: int, seed: int = 0, difficulty: int | tuple[int, int] = 3,
                  ops: str = "+-*/", max_operand: int = 20) -> list[BankProblem]:
    """`count` distinct problems. `difficulty` is a fixed op count or an inclusive range."""
    lo, hi = (difficulty, difficulty) if isinstance(difficulty, int) else difficulty
    out, seen, index = [], set(), 0
    while len(out) < count:
        d = lo + index % (hi - lo + 1)
        p = generate_problem(seed, index, d, ops, max_operand)
        index += 1
        if p.problem_id not in seen:
            seen.add(p.problem_id)
            out.append(p)
        if index > count * 50:
            raise ValueError("could not generate enough distinct problems; widen the settings")
    return out


_HEAD = re.compile(r"^(?P<name>[A-Z][a-z]+) has (?P<start>\d+) (?P<items>[a-z]+)\.")
_OP_PATTERNS = [
    ("+", re.compile(r"Then \w+ gets (\d+) more \w+\.")),
    ("-", re.compile(r"Then \w+ gives away (\d+) \w+\.")),
    ("*", re.compile(r"Then \w+ ends up with (\d+) times as many \w+\.")),
    ("/", re.compile(r"Then \w+ splits the \w+ into (\d+) equal groups and keeps one group\.")),
]


def parse_question(question: str) -> BankProblem | None:
    """Recover the bank problem from its question text; None if it is not a bank question."""
    text = question.strip()
    head = _HEAD.match(text)
    if not head:
        return None
    found: list[tuple[int, Operation]] = []
    for op, pattern in _OP_PATTERNS:
        for m in pattern.finditer(text):
            found.append((m.start(), Operation(op, int(m.group(1)))))
    if not found:
        return None
    found.sort(key=lambda t: t[0])
    p = BankProblem("", head["name"], head["items"], int(head["start"]), tuple(o for _, o in found))
    if p.question != text:
        return None
    return BankProblem(problem_id_for(p.question), p.name, p.items, p.start, p.ops)
