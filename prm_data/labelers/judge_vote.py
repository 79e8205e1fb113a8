"""Multi-judge voting: several LLM judges grade every step; votes become step labels.

After SPARK (Rahman et al., 2025, arXiv:2512.03244: aggregating many independent
step-level verifications beats a single verifier) and CAPO (Xie et al., 2025,
arXiv:2508.02298: an off-the-shelf LLM as generative PRM, critiques sampled
several times and combined by voting). Two answer formats:

- `per_step`: one line `step_i: correct|incorrect` per step
  (`prompts/judge_step.v1.jinja`);
- `first_error`: ProcessBench-style (Zheng et al., arXiv:2412.06559) index of the
  earliest wrong step in `\\boxed{k}`, -1 for none
  (`prompts/judge_first_error.v1.jinja`); a vote `k` says steps before k are
  right and steps from k on are not.

Each judge is a named `LLMClient` sampled `samples` times. Parsing is strict
about meaning and lenient about form; an answer that cannot be read (missing
steps, conflicting verdicts, an index out of range, no answer at all) is an
*abstention*, stored with its raw text, never a vote. Per step, the votes of all
judges give the vote share (the label's value), the majority (hard label; a tie
abstains) and the vote margin (confidence); Fleiss' kappa across judges is
reported per rollout and per batch. Every sample becomes a `judgments` row.

The question, the steps and any rubric are model-written text, so they are
passed to the template escaped (`as_data`): no text inside a step can close its
`<step_i>` tag or forge another one, and the prompt tells the judge that the
tagged content is data whose instructions must be ignored.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from prm_data.failures import FailureLog
from prm_data.labelers.agreement import fleiss_kappa
from prm_data.labelers.inputs import SolutionLike
from prm_data.llm.client import LLMClient
from prm_data.llm.types import GenerationRequest, GenerationResult
from prm_data.prompts import render
from prm_data.records import StepLabel, StepLabels

LABELER = "judge_vote"
VERSION = "1"
Mode = Literal["per_step", "first_error"]
EVIDENCE = {"mode": pa.string(), "prompt_version": pa.string(), "votes_correct": pa.float64(),
            "votes_incorrect": pa.float64(), "margin": pa.float64(),
            "judges": pa.map_(pa.string(), pa.struct([("correct", pa.int64()), ("incorrect", pa.int64())])),
            "abstentions": pa.map_(pa.string(), pa.list_(pa.string())), "fleiss_kappa_rollout": pa.float64(),
            "first_error_votes": pa.map_(pa.string(), pa.int64()), "fleiss_kappa_batch": pa.float64()}
PROMPTS: dict[str, str] = {"per_step": "judge_step.v1", "first_error": "judge_first_error.v1"}


class JudgeSpec(BaseModel):
    """One judge: a named model (its LLMClient is passed separately) sampled `samples` times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="Judge name; the key of its LLMClient and the `judge` column.")
    samples: int = Field(1, ge=1, description="Samples per solution (self-consistency votes).")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature of the judge.")
    max_tokens: int = Field(1024, ge=1, description="Maximum tokens of one judgment.")
    seed: int = Field(0, description="Request seed; with the sample index it keys every judgment.")
    weight: float = Field(1.0, gt=0, description="Weight of each of this judge's votes in the majority.")


class JudgeVoteConfig(BaseModel):
    """How solutions are judged and votes counted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = Field("per_step", description="per_step verdicts or ProcessBench-style first_error index.")
    judges: tuple[JudgeSpec, ...] = Field(
        (JudgeSpec(name="judge", samples=5),), min_length=1,
        description="The judges; five samples of one judge by default (SPARK-style self-consistency).")
    prompt_version: str | None = Field(
        None, description="Template override; default judge_step.v1 or judge_first_error.v1 by mode.")

    @property
    def prompt(self) -> str:
        return self.prompt_version or PROMPTS[self.mode]


@dataclass
class JudgeVoteResult:
    labels: StepLabels
    judgments: list[dict]  # rows of the `judgments` table
    fleiss_kappa: float | None  # across judges, over every judged step of the batch
    abstentions: int = 0
    votes: int = 0
    by_judge: dict[str, dict] = field(default_factory=dict)  # name -> tokens, calls, votes, abstentions


# -------------------------------------------------------------------- prompts
def as_data(text: str) -> str:
    """Escape model-written text for a tagged prompt: & < > become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def rubric_for_prompt(rubric) -> dict | None:
    if rubric is None:
        return None
    return {"hard_rules": [as_data(r) for r in rubric.hard_rules],
            "principles": [as_data(p) for p in rubric.principles]}


def build_request(solution: SolutionLike, spec: JudgeSpec, prompt_version: str, purpose: str,
                  rubric=None) -> GenerationRequest:
    prompt = render(prompt_version, question=as_data(solution.question),
                    steps=[as_data(s) for s in solution.steps], rubric=rubric_for_prompt(rubric))
    return GenerationRequest(messages=prompt.messages, n=spec.samples, temperature=spec.temperature,
                             max_tokens=spec.max_tokens, seed=spec.seed, purpose=purpose,
                             item_id=solution.rollout_id)


# -------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Parsed:
    """A readable vote (`verdicts` per step, and `first_error` in that mode) or an abstention."""

    verdicts: tuple[bool, ...] | None
    first_error: int | None = None
    reason: str | None = None  # why it is an abstention

    @property
    def is_vote(self) -> bool:
        return self.verdicts is not None


_VERDICT = re.compile(
    r"(?im)^[\s>*_#`\-]*(?:<\s*)?step[\s_\-]*(\d+)\s*(?:>\s*)?[*_`]*\s*[:=\-–—]?\s*[*_`]*\s*"
    r"(correct|incorrect|right|wrong|valid|invalid)\b")
_POSITIVE = {"correct", "right", "valid"}
_BOXED = re.compile(r"\\boxed\s*\{\s*([^{}]*?)\s*\}")
_NONE_WORDS = re.compile(r"^(?:-\s*1|−\s*1|none|no error|no errors|n/?a|null)$", re.I)


def parse_per_step(text: str, num_steps: int) -> Parsed:
    """Read `step_i: correct|incorrect` lines; the last verdict given for a step counts.

    Indices must cover exactly 0..n-1 (or 1..n, read as one-based). Anything
    else — a missing step, an extra index, no verdict lines — is an abstention.
    """
    found: dict[int, bool] = {}
    for m in _VERDICT.finditer(text or ""):
        found[int(m.group(1))] = m.group(2).lower() in _POSITIVE
    if not found:
        return Parsed(None, reason="no step verdicts found")
    keys = set(found)
    if keys == set(range(num_steps)):
        return Parsed(tuple(found[i] for i in range(num_steps)))
    if keys == set(range(1, num_steps + 1)):
        return Parsed(tuple(found[i + 1] for i in range(num_steps)))
    missing = sorted(set(range(num_steps)) - keys)
    extra = sorted(keys - set(range(num_steps)))
    return Parsed(None, reason=f"verdicts do not cover the {num_steps} steps (missing {missing}, extra {extra})")


def parse_first_error(text: str, num_steps: int) -> Parsed:
    """Read the last `\\boxed{k}`: k in [0, n) is the earliest wrong step, -1 (or "none") means no error."""
    boxes = _BOXED.findall(text or "")
    if not boxes:
        return Parsed(None, reason="no \\boxed{} answer")
    raw = boxes[-1].strip().strip("$ ").replace("step_", "").replace("Step ", "")
    if _NONE_WORDS.match(raw):
        k = -1
    elif re.fullmatch(r"\d+", raw):
        k = int(raw)
    else:
        return Parsed(None, reason=f"boxed answer {boxes[-1]!r} is not a step index")
    if not -1 <= k < num_steps:
        return Parsed(None, reason=f"step index {k} out of range for {num_steps} steps")
    return Parsed(verdicts_from_first_error(k, num_steps), first_error=k)


def verdicts_from_first_error(k: int, num_steps: int) -> tuple[bool, ...]:
    return tuple(k == -1 or i < k for i in range(num_steps))


def parse(mode: Mode, text: str, num_steps: int) -> Parsed:
    return parse_per_step(text, num_steps) if mode == "per_step" else parse_first_error(text, num_steps)


# ----------------------------------------------------------------- judging
def judge_solutions(solutions: Sequence[SolutionLike], clients: Mapping[str, LLMClient],
                    config: JudgeVoteConfig, run_id: str, *, rubrics: Mapping[str, object] | None = None,
                    labeler: str = LABELER, failures: FailureLog | None = None) -> JudgeVoteResult:
    """Ask every judge about every solution; return step labels, `judgments` rows and agreement.

    `clients` maps each `JudgeSpec.name` to its client (checked before any call).
    With `rubrics` (problem_id -> rubric with `rubric_id`, `hard_rules`,
    `principles`) the rubric is put in the prompt and the judgments' mode is
    `rubric`; a solution whose problem has no rubric is then skipped with a
    failure row.
    """
    missing = [j.name for j in config.judges if j.name not in clients]
    if missing:
        raise KeyError(f"no LLMClient for judge(s) {missing}; clients given: {sorted(clients)}")
    todo = []
    for s in solutions:
        rubric = rubrics.get(s.problem_id) if rubrics is not None else None
        if rubrics is not None and rubric is None:
            if failures is not None:
                failures.record(f"label:{labeler}", "no rubric for this problem; solution not graded",
                                item_id=s.rollout_id)
            continue
        if not s.steps:
            if failures is not None:
                failures.record(f"label:{labeler}", "solution has no steps", item_id=s.rollout_id)
            continue
        todo.append((s, rubric))
    mode_name = "rubric" if rubrics is not None else config.mode
    # votes[rollout][judge] -> list of Parsed (votes and abstentions)
    votes: dict[str, dict[str, list[Parsed]]] = defaultdict(lambda: defaultdict(list))
    cost: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # rollout -> prompt, completion, calls
    judgments: list[dict] = []
    by_judge: dict[str, dict] = {}
    for spec in config.judges:
        client = clients[spec.name]
        requests = [build_request(s, spec, config.prompt, labeler, r) for s, r in todo]
        results = client.generate(requests)
        stats = {"model": client.model, "prompt_tokens": 0, "completion_tokens": 0, "calls": 0,
                 "votes": 0, "abstentions": 0}
        for (s, rubric), req, res in zip(todo, requests, results):
            for index, sample in _indexed(client, req, res):
                parsed = parse(config.mode, sample.text, len(s.steps))
                votes[s.rollout_id][spec.name].append(parsed)
                stats["votes" if parsed.is_vote else "abstentions"] += 1
                if not sample.cached:
                    c = cost[s.rollout_id]
                    c[0] += sample.prompt_tokens
                    c[1] += sample.completion_tokens
                    c[2] += 1
                    stats["prompt_tokens"] += sample.prompt_tokens
                    stats["completion_tokens"] += sample.completion_tokens
                    stats["calls"] += 1
                judgments.append(_judgment_row(run_id, s, spec, client.model, index, mode_name, config,
                                               rubric, parsed, sample))
        by_judge[spec.name] = stats
    weights = {j.name: j.weight for j in config.judges}
    labels, subjects = StepLabels(labeler, f"{VERSION}:{config.prompt}", EVIDENCE), []
    for s, _ in todo:
        rollout_votes = votes.get(s.rollout_id, {})
        rows = _judge_ratings(rollout_votes, len(s.steps))
        subjects.extend(rows)
        _step_labels(labels, s, rollout_votes, weights, cost[s.rollout_id], config, fleiss_kappa(rows))
    batch_kappa = fleiss_kappa(subjects)
    labels.set_evidence("fleiss_kappa_batch", batch_kappa)
    n_votes = sum(1 for j in judgments if j["status"] == "vote")
    return JudgeVoteResult(labels=labels, judgments=judgments, fleiss_kappa=batch_kappa,
                           abstentions=len(judgments) - n_votes, votes=n_votes, by_judge=by_judge)


def _indexed(client: LLMClient, request: GenerationRequest, result: GenerationResult):
    """(sample index, sample) pairs; failed samples are absent (the client logged them)."""
    keys = {request.sample_key(client.backend.name, client.backend.model, i): i for i in range(request.n)}
    for pos, sample in enumerate(result.samples):
        yield keys.get(sample.request_key, pos), sample


def _judgment_row(run_id, solution, spec, model, index, mode_name, config, rubric, parsed, sample) -> dict:
    rubric_id = getattr(rubric, "rubric_id", None)
    key = "\x1f".join(str(x) for x in (solution.rollout_id, spec.name, model, index, mode_name,
                                       config.prompt, rubric_id, spec.seed, spec.temperature))
    per_step = config.mode == "per_step"
    return {
        "judgment_id": "j-" + hashlib.sha256(key.encode()).hexdigest()[:24],
        "run_id": run_id, "problem_id": solution.problem_id, "rollout_id": solution.rollout_id,
        "judge": spec.name, "model": model, "sample_index": index, "mode": mode_name,
        "prompt_version": config.prompt, "rubric_id": rubric_id,
        "status": "vote" if parsed.is_vote else "abstain",
        "step_verdicts": list(parsed.verdicts) if parsed.is_vote and per_step else None,
        "first_error_step": parsed.first_error if not per_step else None,
        "raw_text": sample.text if parsed.is_vote else f"{sample.text}\n[abstain: {parsed.reason}]",
        "prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.completion_tokens,
    }


def _judge_ratings(rollout_votes: Mapping[str, list[Parsed]], num_steps: int) -> list[list[int]]:
    """Per step, how many judges (by their own sample majority) say [incorrect, correct]."""
    rows = []
    for i in range(num_steps):
        counts = [0, 0]
        for parsed in rollout_votes.values():
            c = Counter(p.verdicts[i] for p in parsed if p.is_vote)
            if c[True] != c[False]:
                counts[int(c[True] > c[False])] += 1
        rows.append(counts)
    return rows


def _step_labels(out: StepLabels, solution, rollout_votes, weights, cost, config, kappa) -> None:
    n = len(solution.steps)
    prompt_split, completion_split, call_split = (_split(v, n) for v in cost)
    abstentions = {j: [p.reason for p in ps if not p.is_vote] for j, ps in rollout_votes.items()}
    first_errors = Counter(p.first_error for ps in rollout_votes.values() for p in ps
                           if p.is_vote and p.first_error is not None)
    for i in range(n):
        good = bad = 0.0
        per_judge = {}
        for judge, parsed in rollout_votes.items():
            c = Counter(p.verdicts[i] for p in parsed if p.is_vote)
            good += weights[judge] * c[True]
            bad += weights[judge] * c[False]
            per_judge[judge] = {"correct": c[True], "incorrect": c[False]}
        total = good + bad
        value = good / total if total else None
        hard = None if total == 0 or good == bad else good > bad
        margin = abs(good - bad) / total if total else 0.0
        evidence = {"mode": config.mode, "prompt_version": config.prompt, "votes_correct": good,
                    "votes_incorrect": bad, "margin": margin, "judges": per_judge,
                    "abstentions": {j: r for j, r in abstentions.items() if r},
                    "fleiss_kappa_rollout": kappa}
        if first_errors:
            evidence["first_error_votes"] = {str(k): v for k, v in sorted(first_errors.items())}
        out.add(problem_id=solution.problem_id, rollout_id=solution.rollout_id, step_index=i, value=value,
                hard_label=hard, confidence=margin, prompt_tokens=prompt_split[i],
                completion_tokens=completion_split[i], calls=call_split[i], evidence=evidence)


def _split(total: int, n: int) -> list[int]:
    """Spread a rollout-level cost over its n steps so the step rows sum to it exactly."""
    base, rest = divmod(int(total), n)
    return [base + (1 if i < rest else 0) for i in range(n)]


def first_error_of(labels: Sequence[StepLabel]) -> int:
    """The first step labeled bad (-1 when none) of one rollout's labels."""
    bad = [l.step_index for l in labels if l.hard_label is False]
    return min(bad) if bad else -1
