"""Rubrics: a judge writes per-problem grading rules; rubric-graded judging uses them.

After OpenRubrics (Liu et al., 2025, arXiv:2510.07743: rubrics as *hard rules*
that must hold and *principles* that should, and Contrastive Rubric Generation
from a preferred and a rejected response) and the Rubric Reward Model (Yuan et
al., "Curing Miracle Steps in LLM Mathematical Reasoning with Rubric Rewards",
arXiv:2510.07774: problem-specific rubrics that grade the whole reasoning
process, not only the final answer).

- `generate_rubrics` writes one `reference` rubric per problem from the problem
  and its reference solution (`prompts/rubric.v1.jinja`);
- `generate_contrastive_rubrics` writes one `contrastive` rubric per problem
  that has both a correct and an incorrect rollout
  (`prompts/rubric_contrastive.v1.jinja`);
- `label_with_rubrics` runs the judges of `prm_data.labelers.judge_vote` with
  the rubric inside `<rubric>` tags; labels are stored under labeler `rubric`
  and the judgments with mode `rubric`.

Rubric rows keep the prompt version, the parsed hard rules and principles and
the raw text. An answer with neither section is not a rubric: it becomes a
`failures` row (stage `label:rubric`) with the raw text, never an empty rubric.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from prm_data.failures import FailureLog
from prm_data.labelers.inputs import SolutionLike
from prm_data.labelers.judge_vote import JudgeVoteConfig, JudgeVoteResult, as_data, judge_solutions
from prm_data.llm.client import LLMClient
from prm_data.llm.types import GenerationRequest
from prm_data.prompts import render

LABELER = "rubric"


class RubricConfig(BaseModel):
    """How rubrics are written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_version: str = Field("rubric.v1", description="Template for reference rubrics.")
    contrastive_prompt_version: str = Field(
        "rubric_contrastive.v1", description="Template for contrastive rubrics (OpenRubrics CRG).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the rubric writer.")
    max_tokens: int = Field(1024, ge=1, description="Maximum tokens of one rubric.")
    seed: int = Field(0, description="Request seed.")
    min_hard_rules: int = Field(1, ge=0, description="A rubric with fewer hard rules is a failure.")


@dataclass(frozen=True)
class Rubric:
    rubric_id: str
    problem_id: str
    kind: str  # reference | contrastive
    model: str
    prompt_version: str
    hard_rules: tuple[str, ...]
    principles: tuple[str, ...]
    raw_text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_row(self, run_id: str) -> dict:
        return {"rubric_id": self.rubric_id, "run_id": run_id, "problem_id": self.problem_id,
                "kind": self.kind, "model": self.model, "prompt_version": self.prompt_version,
                "hard_rules": list(self.hard_rules), "principles": list(self.principles),
                "raw_text": self.raw_text, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}

    @classmethod
    def from_row(cls, row: Mapping) -> Rubric:
        return cls(row["rubric_id"], row["problem_id"], row["kind"], row["model"], row["prompt_version"],
                   tuple(row.get("hard_rules") or ()), tuple(row.get("principles") or ()),
                   row.get("raw_text") or "", int(row.get("prompt_tokens") or 0),
                   int(row.get("completion_tokens") or 0))


# -------------------------------------------------------------------- parsing
_HEADER = re.compile(r"(?im)^[\s#*_>]*(hard\s*rules?|principles?)[\s*_]*:?[\s*_]*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$")


def parse_rubric(text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(hard rules, principles) from `Hard rules:` / `Principles:` bullet lists; None if neither is there."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in (text or "").splitlines():
        head = _HEADER.match(line)
        if head:
            current = "hard" if head.group(1).lower().startswith("hard") else "principles"
            sections.setdefault(current, [])
            continue
        bullet = _BULLET.match(line)
        if bullet and current is not None:
            sections[current].append(bullet.group(1).strip())
    if not sections:
        return None
    return tuple(sections.get("hard", ())), tuple(sections.get("principles", ()))


def rubric_id_for(problem_id: str, kind: str, model: str, prompt_version: str, *sources: str) -> str:
    key = "\x1f".join((problem_id, kind, model, prompt_version, *sources))
    return "rb-" + hashlib.sha256(key.encode()).hexdigest()[:20]


# ----------------------------------------------------------------- generating
@dataclass(frozen=True)
class RubricProblem:
    problem_id: str
    question: str
    answer: str
    reference_solution: str


def generate_rubrics(problems: Sequence[RubricProblem], client: LLMClient, config: RubricConfig = RubricConfig(),
                     failures: FailureLog | None = None) -> list[Rubric]:
    """One reference rubric per problem (problems without a reference solution are failures)."""
    asks = []
    for p in problems:
        if not (p.reference_solution or "").strip():
            _fail(failures, p.problem_id, "problem has no reference solution to write a rubric from")
            continue
        prompt = render(config.prompt_version, question=as_data(p.question),
                        reference_solution=as_data(p.reference_solution), answer=as_data(str(p.answer)))
        asks.append((p.problem_id, prompt.messages, ()))
    return _write(asks, client, config, "reference", config.prompt_version, failures)


def generate_contrastive_rubrics(solutions: Sequence[SolutionLike], client: LLMClient,
                                 config: RubricConfig = RubricConfig(),
                                 failures: FailureLog | None = None) -> list[Rubric]:
    """One contrastive rubric per problem with both a correct and an incorrect rollout.

    `solutions` need `is_correct` and `answer` (as `Solution`/`RolloutSteps` have);
    the first correct and first incorrect rollout of each problem are contrasted.
    """
    by_problem: dict[str, dict[bool, SolutionLike]] = {}
    for s in solutions:
        correct = getattr(s, "is_correct", None)
        if correct is None:
            continue
        by_problem.setdefault(s.problem_id, {}).setdefault(bool(correct), s)
    asks = []
    for pid, pair in by_problem.items():
        if True not in pair or False not in pair:
            continue  # nothing to contrast: all rollouts right or all wrong
        good, bad = pair[True], pair[False]
        prompt = render(config.contrastive_prompt_version, question=as_data(good.question),
                        preferred=as_data("\n\n".join(good.steps)), rejected=as_data("\n\n".join(bad.steps)),
                        answer=as_data(str(getattr(good, "answer", "") or "")))
        asks.append((pid, prompt.messages, (good.rollout_id, bad.rollout_id)))
    return _write(asks, client, config, "contrastive", config.contrastive_prompt_version, failures)


def _write(asks, client: LLMClient, config: RubricConfig, kind: str, version: str,
           failures: FailureLog | None) -> list[Rubric]:
    requests = [GenerationRequest(messages=messages, n=1, temperature=config.temperature,
                                  max_tokens=config.max_tokens, seed=config.seed, purpose=LABELER,
                                  item_id=pid) for pid, messages, _ in asks]
    out = []
    for (pid, _, sources), result in zip(asks, client.generate(requests)):
        if not result.samples:
            continue  # the client already wrote the failure row for the request
        sample = result.samples[0]
        parsed = parse_rubric(sample.text)
        if parsed is None or len(parsed[0]) < config.min_hard_rules:
            _fail(failures, pid, f"{kind} rubric answer has no usable 'Hard rules:' section", sample.text)
            continue
        hard, principles = parsed
        out.append(Rubric(rubric_id_for(pid, kind, client.model, version, *sources), pid, kind, client.model,
                          version, hard, principles, sample.text,
                          0 if sample.cached else sample.prompt_tokens,
                          0 if sample.cached else sample.completion_tokens))
    return out


def _fail(failures: FailureLog | None, problem_id: str, reason: str, text: str | None = None) -> None:
    if failures is not None:
        failures.record(f"label:{LABELER}", reason, item_id=problem_id, input=text)


# --------------------------------------------------------------------- grading
def label_with_rubrics(solutions: Sequence[SolutionLike], rubrics: Sequence[Rubric] | Mapping[str, Rubric],
                       clients: Mapping[str, LLMClient], config: JudgeVoteConfig, run_id: str,
                       failures: FailureLog | None = None) -> JudgeVoteResult:
    """Rubric-graded judging: the judges of `config` see the problem's rubric in `<rubric>` tags.

    With several rubrics for one problem, a contrastive one is preferred
    (it names the mistakes actually made), else the first given.
    """
    if isinstance(rubrics, Mapping):
        chosen = dict(rubrics)
    else:
        chosen = {}
        for r in rubrics:
            if r.problem_id not in chosen or (r.kind == "contrastive" and chosen[r.problem_id].kind != "contrastive"):
                chosen[r.problem_id] = r
    return judge_solutions(solutions, clients, config, run_id, rubrics=chosen, labeler=LABELER,
                           failures=failures)
