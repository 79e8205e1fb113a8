"""A scripted completer backend for the Monte Carlo labeler tests.

It implements the `Backend` protocol for real (the labelers drive it through
`LLMClient` like any server), but its outcomes are set by the test: a script
maps (prefix steps, how many samples were already drawn from that prefix) to
whether the continuation reaches the gold answer, and optionally the next step
it writes. So a test knows exactly which counts every estimate must show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from prm_data.llm.types import BackendError, GenerationRequest, Sample
from prm_data.rollouts import RolloutSteps
from prm_data.steps import normalize_step, split_steps

GOLD = "7"
QUESTION = "A scripted question whose answer is 7."

Script = Callable[[tuple[str, ...], int], "bool | tuple[bool, str | None]"]


class ScriptedBackend:
    name = "scripted"

    def __init__(self, script: Script, model: str = "scripted-policy", tokens_per_sample: int = 10,
                 fail_on: Callable[[tuple[str, ...]], bool] | None = None):
        self.script = script
        self.model = model
        self.tokens_per_sample = tokens_per_sample
        self.fail_on = fail_on
        self.drawn: Counter = Counter()  # normalized prefix -> samples drawn from it
        self.keys: list[str] = []

    async def generate_one(self, request: GenerationRequest, sample_index: int) -> Sample:
        prefix = tuple(split_steps(request.assistant_prefix or ""))
        if self.fail_on is not None and self.fail_on(prefix):
            raise BackendError("scripted failure", retryable=False)
        norm = tuple(normalize_step(s) for s in prefix)
        outcome = self.script(prefix, self.drawn[norm])
        self.drawn[norm] += 1
        correct, next_step = outcome if isinstance(outcome, tuple) else (outcome, None)
        final = f"The answer is \\boxed{{{GOLD if correct else int(GOLD) + 1}}}."
        text = f"{next_step}\n\n{final}" if next_step else final
        key = request.sample_key(self.name, self.model, sample_index)
        self.keys.append(key)
        return Sample(text=text, finish_reason="stop", prompt_tokens=5,
                      completion_tokens=self.tokens_per_sample, latency_s=0.0, request_key=key)

    def drawn_from(self, prefix: list[str] | tuple[str, ...]) -> int:
        return self.drawn[tuple(normalize_step(s) for s in prefix)]


def rollout(rollout_id: str, steps: list[str], is_correct: bool, problem_id: str = "p-scripted",
            policy_model: str = "scripted-policy", completion_tokens: int = 40) -> RolloutSteps:
    return RolloutSteps(problem_id=problem_id, rollout_id=rollout_id, question=QUESTION, answer=GOLD,
                        steps=tuple(steps), is_correct=is_correct, policy_model=policy_model,
                        completion_tokens=completion_tokens)


def steps_of(n: int, tag: str = "") -> list[str]:
    return [f"Step {i + 1}: {tag}fact number {i + 1} holds, so {i} + 1 = {i + 1}." for i in range(n)]
