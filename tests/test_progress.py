"""Progress events: the CLI's bars see every sample a batch asks for, and nothing after unsubscribing."""

from prm_data import progress
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.llm.types import GenerationRequest, Message
from prm_data.sources.bank import generate_bank


def _requests(purpose: str, n: int = 3):
    return [GenerationRequest(messages=(Message("user", p.question),), n=n, purpose=purpose)
            for p in generate_bank(2, seed=5)]


def test_a_listener_sees_the_total_and_each_finished_sample_of_a_batch():
    events = []
    stop = progress.listen(lambda task, n, total: events.append((task, n, total)))
    try:
        LLMClient(SimBackend()).generate(_requests("rollout"))
    finally:
        stop()
    assert sum(total or 0 for _, _, total in events) == 6
    assert sum(n for _, n, _ in events) == 6
    assert {task for task, _, _ in events} == {"rollout"}


def test_an_unsubscribed_listener_hears_nothing():
    events = []
    client = LLMClient(SimBackend())
    stop = progress.listen(lambda task, n, total: events.append((task, n, total)))
    stop()
    client.generate(_requests("mc_value", n=2))
    assert events == []


def test_the_cli_bars_count_each_sample_once_against_the_announced_total():
    from flows.commands import _Bars

    bars = _Bars()
    bars("rollout", 0, 6)
    for _ in range(6):
        bars("rollout", 1, None)
    bars("rollout", 0, 2)  # a second batch of the same purpose grows the total
    (task,) = bars.progress.tasks
    assert (task.total, task.completed) == (8, 6)
