"""A synthetic coder with known ground truth: it writes code-bank solutions with injected bugs.

Like the math simulator (prm_data/llm/sim.py) this is a test instrument, not a
language model: every assumption is a named parameter, reported by
`assumptions()`. A model name with "coder" in it (`sim-coder`) selects it, in
the sim backend and behind `prm-data serve-sim` alike.

It finds a code-bank problem (prm_data/sources/code_bank.py) in the prompt and
writes the reference solution step by step (the `code_block` steps: the fenced
`def` line, then one step per block of the body). At each body step, with
probability `bug_rate`, it writes a bug instead, of one of three kinds drawn by
their named shares:

- `off_by_one`: a bound moved by one (`<` for `<=`, `range(len(xs) - 1)`, a
  constant plus or minus one);
- `wrong_operator`: `+`/`-`, `*`/`+`, `==`/`!=`, `<`/`>`, `and`/`or` swapped;
- `wrong_variable`: a variable used in place of another one in scope.

Truth is checked, not asserted. A bug is only ever drawn from the mutations of
that step that, alone in the reference, fail at least one of the problem's unit
tests (a `<` that becomes `<=` where ties never change the result is not a
bug, and is never drawn); the kind is drawn among the kinds that step has such
mutations of (shares renormalized), and a step with no test-visible mutation at
all (the header) is written right. Once a solution is wrong, a later bug that would make it pass again is
not drawn, so a bug is never undone by another; with `fix_rate`, a solution
that is wrong at its end is followed, that often, by a corrected redefinition
of the function (Python keeps the last definition: the code then passes its
tests although a step was wrong, as a process error under a right outcome).

`true_first_error` (in `Sample.metadata`; 0-based over all steps, prefix
included; -1 for none) is then *computed*: the first step `i` such that the
steps up to `i` followed by the reference's remaining blocks fail a test. The
code it runs for this is only ever the bank's reference and the simulator's
own mutations of it (prm_data/sources/trusted_exec.py); a prefix step it did
not write and cannot match to one of them is never run: it counts as an error
(`metadata["unrecognized_step"]`).

With `plan_rate` a solution starts with a reasoning paragraph (its plan) before the
code: a prose step, never an error, so reasoning-then-code solutions are
exercised too.

It continues from any assistant prefix: the prefix's steps are matched to the
reference (or to a known mutation of it), and the remaining steps are written
after it with fresh bug draws. Every sample is a pure function of the request
and the sample index.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prm_data.code_steps import code_block_spans
from prm_data.llm.code_mutations import KINDS, verified_mutations
from prm_data.sources.code_bank import CodeProblem, parse_code_question
from prm_data.sources.trusted_exec import passes_all
from prm_data.steps import join_steps, normalize_step

POLICY = "code_block"
DONE = "The function is complete."


class SimCoderParams(BaseModel):
    """The code simulator's assumptions (prm_data/llm/sim_code.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bug_rate: float = Field(0.12, ge=0, le=1, description="Probability of a bug at each body step.")
    off_by_one: float = Field(1.0, ge=0, description="Relative share of off-by-one bugs (bounds, < vs <=, constants).")
    wrong_operator: float = Field(1.0, ge=0, description="Relative share of wrong-operator bugs (+/-, and/or, ...).")
    wrong_variable: float = Field(1.0, ge=0, description="Relative share of bugs using another variable in scope.")
    fix_rate: float = Field(0.0, ge=0, le=1, description="Chance that a solution wrong at its end is followed by a "
                                                        "corrected redefinition of the function (0: never undone).")
    plan_rate: float = Field(0.0, ge=0, le=1, description="Chance that a solution starts with a reasoning paragraph "
                                                         "(a plan; prose, never an error) before its code.")

    @model_validator(mode="after")
    def _some_kind(self):
        if self.off_by_one + self.wrong_operator + self.wrong_variable <= 0:
            raise ValueError("at least one bug kind needs a positive share")
        return self

    def shares(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in KINDS}


@dataclass
class CodeStepState:
    """What the simulator knows of one written step: right, a known bug, prose, or code it cannot place."""

    text: str
    kind: str  # "reference", a bug kind, "fix" (the corrected redefinition), "prose" or "unknown"


class SimCoder:
    """The code policy. `complete(user, prefix, rng)` is its whole behaviour (shared with serve-sim)."""

    def __init__(self, params: SimCoderParams | None = None, model: str = "sim-coder"):
        self.params = params or SimCoderParams()
        self.model = model

    def assumptions(self) -> dict:
        return {"model": self.model, **self.params.model_dump(),
                "bugs": "only mutations that alone fail at least one unit test; never undone by a later bug"}

    def complete(self, user: str, prefix: str, rng: random.Random) -> tuple[str, dict]:
        problem = find_code_problem(user)
        if problem is None:
            return "I cannot solve this task.", {"true_first_error": 0, "reason": "not a code-bank problem"}
        written = place_steps(problem, prefix)
        n = len(problem.reference_steps)
        out: list[CodeStepState] = []
        if not written and rng.random() < self.params.plan_rate:
            out.append(CodeStepState(plan_for(problem), "prose"))
        for i in range(len(_code(written)), n):
            out.append(self._write(problem, i, _code(written + out), rng))
        if _code(out) and not passes(problem, _code(written + out)) and rng.random() < self.params.fix_rate:
            out = _with_fix(problem, out)
        texts = [s.text for s in out] or [DONE]
        states = written + (out or [CodeStepState(DONE, "prose")])
        truth, unknown = first_error(problem, states)
        meta = {"true_first_error": truth, "passes_tests": passes(problem, _code(states)),
                "bugs": [[i, s.kind] for i, s in enumerate(states) if s.kind in KINDS]}
        if unknown is not None:
            meta["unrecognized_step"] = unknown
        return _continuation_text(prefix, [s.text for s in written], texts), meta

    def _write(self, problem: CodeProblem, i: int, before: list[CodeStepState], rng: random.Random) -> CodeStepState:
        """Code step `i` (0 = the fenced header) after the code steps `before`: the reference's, or a bug."""
        right = CodeStepState(problem.reference_steps[i], "reference")
        if i == 0 or rng.random() >= self.params.bug_rate:
            return right
        options = verified_mutations(problem, i - 1)
        kinds = {k: w for k, w in self.params.shares().items() if w > 0 and options.get(k)}
        if not kinds:
            return right
        order = list(kinds)
        kind = rng.choices(order, weights=[kinds[k] for k in order])[0]
        already_wrong = not passes_with_reference(problem, before)
        candidates = list(options[kind])
        rng.shuffle(candidates)
        for text in candidates:
            state = CodeStepState(_with_fence(problem, i, text), kind)
            # never undo an earlier bug: the solution must still fail with this one in it
            if not already_wrong or not passes_with_reference(problem, before + [state]):
                return state
        return right


def plan_for(problem: CodeProblem) -> str:
    """The reasoning paragraph a planned solution starts with (what the function must do, how)."""
    task, *extras = problem.requirements
    also = "".join(f" {e[:1].lower()}{e[1:]};" for e in extras)
    return (f"Plan: `{problem.name}` {task};{also} I handle each requirement in order, one statement of the "
            "body each, and return the result at the end.")


def find_code_problem(user: str) -> CodeProblem | None:
    """The code-bank problem in a prompt: the whole text, or one of its lines (a `Task:` label dropped)."""
    for text in [user, *reversed(user.split("\n"))]:
        text = text.strip()
        for label in ("Task:", "Problem:", "Question:"):
            if text.startswith(label):
                text = text[len(label):].strip()
        p = parse_code_question(text)
        if p is not None:
            return p
    return None


def place_steps(problem: CodeProblem, prefix: str) -> list[CodeStepState]:
    """The prefix's steps, each matched to the reference, a verified mutation of it, or nothing known."""
    text = (prefix or "").replace("\r\n", "\n")
    states, code_index = [], 0
    for start, end, is_code in code_block_spans(text):
        step = text[start:end].rstrip() if is_code else text[start:end].strip()
        if not step:
            continue
        if not is_code:
            states.append(CodeStepState(step, "prose"))
            continue
        states.append(_place(problem, code_index, step))
        code_index += 1
    return states


def _place(problem: CodeProblem, i: int, step: str) -> CodeStepState:
    reference = problem.reference_steps
    if i < len(reference) and normalize_step(step) == normalize_step(reference[i]):
        return CodeStepState(step, "reference")
    if 0 < i < len(reference):
        for kind, texts in verified_mutations(problem, i - 1).items():
            if any(normalize_step(step) == normalize_step(_with_fence(problem, i, t)) for t in texts):
                return CodeStepState(step, kind)
    fix, j = _fix_steps(problem), i - len(reference)
    if 0 <= j < len(fix) and normalize_step(step) == normalize_step(fix[j]):
        return CodeStepState(step, "fix")
    return CodeStepState(step, "unknown")


def _code(states: list[CodeStepState]) -> list[CodeStepState]:
    return [s for s in states if s.kind != "prose"]


def _with_fence(problem: CodeProblem, i: int, body_text: str) -> str:
    return body_text + "\n```" if i == len(problem.reference_steps) - 1 else body_text


def _plain(text: str) -> str:
    return text.replace("```python\n", "").replace("\n```", "")


def program_with_reference(problem: CodeProblem, code_states: list[CodeStepState]) -> str:
    """The written code steps (up to the reference's length) completed with the reference's remaining blocks."""
    n = len(problem.reference_steps)
    body = [_plain(s.text) for s in code_states[1:n]]
    return "\n".join([problem.header, *body, *problem.body[len(body):]]) + "\n"


def passes_with_reference(problem: CodeProblem, code_states: list[CodeStepState]) -> bool:
    if any(s.kind == "unknown" for s in code_states):
        return False
    return passes_all(program_with_reference(problem, code_states), problem.tests)


def passes(problem: CodeProblem, code_states: list[CodeStepState]) -> bool:
    """Whether the code written (a fix included) passes the tests; False when a step is not ours (not run)."""
    if any(s.kind == "unknown" for s in code_states):
        return False
    n = len(problem.reference_steps)
    code = program_with_reference(problem, code_states)
    code += "".join(_plain(s.text) + "\n" for s in code_states[n:])
    return passes_all(code, problem.tests)


def first_error(problem: CodeProblem, states: list[CodeStepState]) -> tuple[int, int | None]:
    """(true first error, index of the first unrecognized step or None), both over all steps, by running tests.

    The first error is the first code step after which the reference's remaining blocks no longer pass.
    """
    n = len(problem.reference_steps)
    code_seen: list[CodeStepState] = []
    for i, state in enumerate(states):
        if state.kind == "prose":
            continue
        if state.kind == "unknown":
            return i, i
        code_seen.append(state)
        if len(code_seen) <= n and not passes_with_reference(problem, code_seen):
            return i, None
    return -1, None


def _fix_steps(problem: CodeProblem) -> list[str]:
    """The corrected redefinition written after a wrong solution: a comment and header, then the blocks."""
    return ["# corrected version\n" + problem.header, *problem.body[:-1], problem.body[-1] + "\n```"]


def _with_fix(problem: CodeProblem, out: list[CodeStepState]) -> list[CodeStepState]:
    last = out[-1]
    return out[:-1] + [CodeStepState(last.text.replace("\n```", ""), last.kind)] + \
        [CodeStepState(t, "fix") for t in _fix_steps(problem)]


def _continuation_text(prefix: str, written: list[str], texts: list[str]) -> str:
    """The new steps as the text that follows `prefix` (whatever whitespace it ends with)."""
    if not written:
        return join_steps(texts, POLICY, trailing=False)
    joined_prefix = join_steps(written, POLICY)
    whole = join_steps(written + texts, POLICY, trailing=False)
    rest = whole[len(joined_prefix):] if whole.startswith(joined_prefix) else "\n" + "\n".join(texts)
    needed = len(joined_prefix) - len(joined_prefix.rstrip("\n"))
    present = len(prefix) - len(prefix.rstrip("\n"))
    return "\n" * max(0, needed - present) + rest
