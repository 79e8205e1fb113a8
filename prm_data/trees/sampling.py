"""Sampling completions from step prefixes, feeding every one back into the prefix tree.

`Completer` is what the Monte Carlo labelers (mc_value, omega_prm, sibling,
progress) share: given a problem and a step prefix it asks the completer model
to continue the solution (the prefix is sent as `assistant_prefix`), grades each
continuation with the problem's outcome verifier (prm_data/verifiers: math answers,
code unit tests, exact match, multiple choice; all samples of one model batch in
one `verify_many`, so code runs in parallel sandboxes), inserts it into the `PrefixTree` as a path
(so its steps get statistics too) and keeps a `completions` row for it. Nothing
paid for is thrown away.

The seed of a request from a node is derived from the node's `visits` (the
number of requests already made from it), so two requests from one prefix
never share sample keys, a reloaded tree continues with fresh samples, and a
rerun of the same tree state hits the request cache.

Labeler algorithms are written as generators that `yield` one `Ask` and receive
its `Completion`s; `drive` runs many of them together, one LLM batch per round,
so sequential methods (early stopping, binary search) still batch across
problems; with `disjoint` tasks it pipelines their asks instead of waiting for
whole rounds, so the server stays busy. `mc_estimate` is the shared Monte Carlo estimate of one prefix
(Math-Shepherd, arXiv 2312.08935), with optional tree reuse and early stopping.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, TypeVar

import pyarrow as pa

from pydantic import BaseModel, ConfigDict, Field

from prm_data.failures import FailureLog
from prm_data.llm.client import LLMClient
from prm_data.llm.types import GenerationRequest, GenerationResult
from prm_data.rollouts import RolloutSteps, solve_prompt, tests_passed
from prm_data.steps import continuation_steps, join_steps
from prm_data.trees.prefix_tree import PrefixTree, TreeNode
from prm_data.verifiers.protocol import Outcome, OutcomeSpec
from prm_data.verifiers.registry import DEFAULT as DEFAULT_VERIFIERS
from prm_data.verifiers.registry import Verifiers

T = TypeVar("T")


class CompleterConfig(BaseModel):
    """How continuations are sampled from a prefix (the completer policy's settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_version: str = Field("solve.v1", description="Prompt template; the prefix continues its answer.")
    step_policy: Literal["blank_line", "step_k", "line", "code_block"] = Field(
        "blank_line", description="Step splitting; must match the one the rollouts were split with.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature of the completer.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    max_tokens: int = Field(1024, ge=1, description="Maximum tokens per completion.")
    seed: int = Field(0, description="Base seed; mixed with the node's visit count per request.")
    few_shot: int = Field(0, ge=0, le=4, description="Worked bank examples in the prompt (as for rollouts).")
    stop: tuple[str, ...] = Field((), description="Stop strings.")
    max_in_flight: int = Field(
        64, ge=0, description="Asks a labeler whose tasks touch disjoint subtrees (OmegaPRM: one search per "
                              "problem) keeps in flight without waiting for a whole round (trees/sampling.py "
                              "`drive`); 0 = always in rounds. Changes wall time only, never the labels.")


@dataclass(frozen=True)
class Ask:
    """Sample `n` continuations of `prefix` (the first `len(prefix)` steps) for a problem."""

    problem_id: str
    question: str
    answer: str
    prefix: tuple[str, ...]
    n: int
    spec: OutcomeSpec | None = None  # how a completed solution is graded; None = math against `answer`

    @property
    def outcome_spec(self) -> OutcomeSpec:
        return self.spec if self.spec is not None else OutcomeSpec("math", self.answer)


@dataclass(frozen=True)
class Completion:
    completion_id: str
    node_id: str  # the prefix node it continued from
    correct: bool
    steps: tuple[str, ...]  # the continuation's steps
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    score: float = 0.0  # the verifier's soft score in [0, 1] (code: share of unit tests passed)
    outcome: Outcome | None = None  # the verifier's whole decision (per-test passes for code)


@dataclass
class Estimate:
    """A Monte Carlo estimate of one prefix node, and what it cost."""

    node_id: str
    successes: int = 0
    samples: int = 0
    score_sum: float = 0.0  # sum of the samples' soft scores (= successes when every outcome is 0/1)
    new_samples: int = 0
    reused_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    requests: int = 0
    early_stopped: bool = False
    samples_saved: int = 0
    est_tokens_saved: int = 0
    new_wrong: tuple[Completion, ...] = ()

    @property
    def value(self) -> float | None:
        return self.successes / self.samples if self.samples else None

    @property
    def soft_value(self) -> float | None:
        """The mean soft score of the samples (a code completion counts its share of tests passed)."""
        return self.score_sum / self.samples if self.samples else None

    def evidence(self) -> dict:  # its fields' types: ESTIMATE_EVIDENCE
        return {"node_id": self.node_id, "mc_successes": self.successes, "mc_samples": self.samples,
                "new_samples": self.new_samples, "reused_samples": self.reused_samples,
                "early_stopped": self.early_stopped, "samples_saved": self.samples_saved,
                "est_completion_tokens_saved": self.est_tokens_saved}


# The types of `Estimate.evidence()`'s fields, for the labelers' StepLabels (prm_data/records.py).
ESTIMATE_EVIDENCE = {"node_id": pa.string(), "mc_successes": pa.int64(), "mc_samples": pa.int64(),
                     "new_samples": pa.int64(), "reused_samples": pa.int64(), "early_stopped": pa.bool_(),
                     "samples_saved": pa.int64(), "est_completion_tokens_saved": pa.int64()}


def ask_for(rollout: RolloutSteps, prefix_len: int, n: int) -> Ask:
    return Ask(rollout.problem_id, rollout.question, rollout.answer, tuple(rollout.steps[:prefix_len]), n,
               rollout.outcome_spec)


class Completer:
    """A completer model + the prefix tree its samples feed + the completions rows they made."""

    def __init__(self, client: LLMClient, tree: PrefixTree | None = None,
                 cfg: CompleterConfig | None = None, run_id: str = "run",
                 failures: FailureLog | None = None, verifiers: Verifiers | None = None):
        self.client = client
        self.verifiers = verifiers if verifiers is not None else DEFAULT_VERIFIERS
        self.tree = tree if tree is not None else PrefixTree(client.model)
        if self.tree.model is None:
            self.tree.model = client.model
        elif self.tree.model != client.model:
            raise ValueError(f"the tree holds MC statistics of {self.tree.model!r}; sampling from "
                             f"{client.model!r} into it would mix two policies' estimates")
        self.cfg = cfg or CompleterConfig()
        self.run_id = run_id
        self.failures = failures if failures is not None else FailureLog(run_id)
        self.completion_rows: list[dict] = []
        self._tokens = [0, 0]  # completion tokens, samples: the running mean used for saved-cost estimates

    @property
    def model(self) -> str:
        return self.client.model

    def mean_completion_tokens(self) -> float:
        return self._tokens[0] / self._tokens[1] if self._tokens[1] else 0.0

    def add_rollouts(self, rollouts: Sequence[RolloutSteps]) -> None:
        """Insert rollouts as paths from the root; counted only when written by the tree's model."""
        for r in rollouts:
            self.tree.insert_path(r.problem_id, r.steps, 0, r.is_correct, r.rollout_id, r.policy_model,
                                  score=r.score)

    def verifier_tag(self, ask: Ask) -> str:
        """`name@version` of the verifier that grades the completions of `ask` in this completer."""
        found = self.verifiers.verifier(ask.outcome_spec.verifier)
        return f"{found.name}@{found.version}"

    def sample(self, asks: Sequence[Ask], purpose: str) -> list[list[Completion]]:
        """Sample every ask in one client batch, grade all its samples in one verifier batch; in order."""
        prepared = [self.prepare(a, purpose) for a in asks]
        results = self.client.generate([request for request, _ in prepared])
        outcomes = self.grade(asks, results)
        return [self.collect(a, node, result, purpose, graded)
                for a, (_, node), result, graded in zip(asks, prepared, results, outcomes)]

    def grade(self, asks: Sequence[Ask], results: Sequence[GenerationResult]) -> list[list[Outcome]]:
        """The verifier's outcome of every sample of every ask (the whole solution: prefix + continuation)."""
        items = []
        for a, result in zip(asks, results):
            prefix_text = join_steps(list(a.prefix), self.cfg.step_policy)
            items += [(a.outcome_spec, prefix_text + s.text) for s in result.samples]
        flat = iter(self.verifiers.verify_many(items))
        return [[next(flat) for _ in result.samples] for result in results]

    def prepare(self, ask: Ask, purpose: str) -> tuple[GenerationRequest, TreeNode]:
        """The request for `ask` (its seed from the node's visit count, which it advances)."""
        node = self.tree.node_at(ask.problem_id, ask.prefix)
        seed = _seed(self.cfg.seed, node.visits)
        node.visits += 1
        prompt = solve_prompt(self.cfg.prompt_version, ask.question, self.cfg.few_shot)
        return GenerationRequest(
            messages=prompt.messages,
            assistant_prefix=join_steps(list(ask.prefix), self.cfg.step_policy) or None,
            n=ask.n, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
            max_tokens=self.cfg.max_tokens, stop=tuple(self.cfg.stop), seed=seed, purpose=purpose,
            item_id=node.node_id), node

    def collect(self, a: Ask, node: TreeNode, result: GenerationResult, purpose: str,
                outcomes: Sequence[Outcome] | None = None) -> list[Completion]:
        """Feed the graded samples of one ask into the tree and keep their completions rows.

        `outcomes` are the samples' verifier outcomes (`grade`); graded here when not given."""
        if outcomes is None:
            outcomes = self.grade([a], [result])[0]
        if result.error is not None:
            self.failures.record(f"label:{purpose}", f"{a.n - len(result.samples)} of {a.n} "
                                 f"completions could not be sampled: {result.error}",
                                 item_id=node.node_id, input=join_steps(list(a.prefix)))
        got = []
        for s, outcome in zip(result.samples, outcomes):
            cont = continuation_steps(list(a.prefix), s.text, self.cfg.step_policy)
            ok = outcome.success
            cid = "c-" + hashlib.sha256(("completion:" + s.request_key).encode()).hexdigest()[:24]
            self.tree.insert_path(a.problem_id, list(a.prefix) + cont, len(a.prefix), ok, cid, self.client.model,
                                  score=outcome.score)
            got.append(Completion(cid, node.node_id, ok, tuple(cont), s.prompt_tokens, s.completion_tokens,
                                  s.cached, outcome.score, outcome))
            if outcome.fault:  # the code hung, crashed or hit a limit: counted as a failed continuation, said why
                self.failures.record(f"label:{purpose}", f"{outcome.tag}: {outcome.fault}", item_id=cid,
                                     input=s.text)
            if not s.cached:
                self._tokens[0] += s.completion_tokens
                self._tokens[1] += 1
            self.completion_rows.append({
                "completion_id": cid, "run_id": self.run_id, "problem_id": a.problem_id,
                "node_id": node.node_id, "purpose": purpose, "model": self.client.model,
                "prefix_steps": len(a.prefix), "text": s.text, "final_answer": outcome.answer,
                "is_correct": ok, "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens, "request_key": s.request_key,
                "score": outcome.score, "verifier": outcome.tag, "tests_passed": tests_passed(outcome)})
        return got


def _seed(base: int, visits: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{base}:{visits}".encode()).digest()[:4], "big")


Task = Generator[Ask, list[Completion], T]


def drive(completer: Completer, tasks: Sequence[Task], purpose: str, *, disjoint: bool = False) -> list[T]:
    """Run sampling generators together; returns each task's result, in order.

    In rounds (the default): each round sends every pending ask as one batch, so the
    tree sees the same order whatever the timing. With `disjoint` (the tasks touch
    disjoint parts of the tree, e.g. one task per problem) and the completer's
    `max_in_flight` > 0, asks are pipelined instead: each is sent as soon as its task
    yields it, up to `max_in_flight` at once, and a task moves on as soon as its own
    answer is back, so a few slow or long searches never leave the server idle
    between rounds. The results are the same as in rounds (each task sees only its
    own nodes); only the wall time differs.
    """
    if disjoint and completer.cfg.max_in_flight > 0 and len(tasks) > 1:
        return _drive_pipelined(completer, tasks, purpose, completer.cfg.max_in_flight)
    results: list = [None] * len(tasks)
    pending: dict[int, Ask] = {}
    for i, task in enumerate(tasks):
        try:
            pending[i] = next(task)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = list(pending)
        answers = completer.sample([pending[i] for i in order], purpose)
        for i, got in zip(order, answers):
            try:
                pending[i] = tasks[i].send(got)
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return results


def _drive_pipelined(completer: Completer, tasks: Sequence[Task], purpose: str, window: int) -> list:
    """`drive` without rounds: up to `window` asks in flight, each task advanced when its answer lands.

    Tree updates (seeds, inserts) stay on this thread; worker threads only wait on the client and the verifier.
    """
    results: list = [None] * len(tasks)
    ready: deque[tuple[int, Ask]] = deque()
    for i, task in enumerate(tasks):
        try:
            ready.append((i, next(task)))
        except StopIteration as stop:
            results[i] = stop.value
    in_flight: dict = {}
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix=f"drive-{purpose}") as pool:
        while ready or in_flight:
            while ready and len(in_flight) < window:
                i, ask = ready.popleft()
                request, node = completer.prepare(ask, purpose)
                future = pool.submit(_generate_and_grade, completer, ask, request)
                in_flight[future] = (i, ask, node)
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                i, ask, node = in_flight.pop(future)
                result, outcomes = future.result()
                got = completer.collect(ask, node, result, purpose, outcomes)
                try:
                    ready.append((i, tasks[i].send(got)))
                except StopIteration as stop:
                    results[i] = stop.value
    return results


def _generate_and_grade(completer: Completer, ask: Ask, request: GenerationRequest):
    """On a worker thread: one ask's samples, and their outcomes when its verifier may run on many threads
    (code: a sandbox each); others (math-verify's parser) are graded on the caller's thread, as ever."""
    result = completer.client.generate([request])[0]
    if getattr(completer.verifiers.verifier(ask.outcome_spec.verifier), "concurrent", False):
        return result, completer.grade([ask], [result])[0]
    return result, None


def mc_estimate(completer: Completer, ask: Ask, k: int, *, reuse: bool = True,
                early_stop: bool = False, chunk_size: int = 2) -> Task[Estimate]:
    """Monte Carlo estimate of the prefix `ask.prefix` from `k` completions (Math-Shepherd).

    With `reuse`, samples the tree already counts at the node are used and only
    the missing ones are drawn; the estimate is the node's statistics. Without
    it, `k` fresh completions are drawn and only they make the estimate (they
    still feed the tree). With `early_stop` (for hard labels: any success makes
    the step good) completions are drawn `chunk_size` at a time and drawing
    stops at the first success; the samples not drawn are reported as saved.
    """
    node: TreeNode = completer.tree.node_at(ask.problem_id, ask.prefix)
    est = Estimate(node.node_id)
    if reuse:
        est.successes, est.samples, est.score_sum = node.mc_successes, node.mc_samples, node.mc_score
        est.reused_samples = min(node.mc_samples, k)
    new_tokens: list[int] = []
    wrong: list[Completion] = []
    while est.samples < k and not (early_stop and est.successes > 0):
        n = k - est.samples
        if early_stop:
            n = min(n, chunk_size)
        got = yield Ask(ask.problem_id, ask.question, ask.answer, ask.prefix, n, ask.spec)
        est.requests += 1
        if not got:  # the request failed (recorded by the completer): stop rather than loop
            break
        for c in got:
            est.successes += int(c.correct)
            est.score_sum += c.score
            est.samples += 1
            est.new_samples += 1
            if not c.cached:
                est.calls += 1
                est.prompt_tokens += c.prompt_tokens
                est.completion_tokens += c.completion_tokens
                new_tokens.append(c.completion_tokens)
            if not c.correct:
                wrong.append(c)
    if reuse:  # other paths may have fed the node meanwhile; the node is the estimate
        est.successes, est.samples, est.score_sum = node.mc_successes, node.mc_samples, node.mc_score
    if early_stop and est.successes > 0 and est.samples < k:
        est.early_stopped = True
        est.samples_saved = k - est.samples
        per_sample = (sum(new_tokens) / len(new_tokens)) if new_tokens else completer.mean_completion_tokens()
        est.est_tokens_saved = round(est.samples_saved * per_sample)
    est.new_wrong = tuple(wrong)
    return est


def labeler_version(code_version: str, cfg: BaseModel) -> str:
    """`<code version>-<hash of the config>`: labels of different settings never look alike."""
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:8]
    return f"{code_version}-{digest}"
