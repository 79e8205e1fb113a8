"""The same labeling code runs on sim, local and openai; switching is one config value (`kind`).

The code under test is the real first stages of labeling: rollouts
(prm_data/rollouts.py) and Math-Shepherd Monte Carlo values through the
completer (prm_data/labelers/mc_value.py). Only `kind` changes between runs.
"""

from __future__ import annotations

import pytest

from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.llm.factory import BackendConfig, LocalParams, make_client
from prm_data.rollouts import RolloutConfig, generate_rollouts
from prm_data.serve_sim import SimServer
from prm_data.sources.bank import generate_bank
from prm_data.trees.sampling import Completer, CompleterConfig
from prm_data.warehouse import Warehouse

PROBLEMS = [p.to_row("switch") for p in generate_bank(2, seed=41, difficulty=1)]
MAX_TOKENS = 32  # enough for a 1-step synthetic solution, short for the real CPU model


def label(cfg: BackendConfig, warehouse: Warehouse, run_id: str):
    """The labeling code path: no branch on the backend anywhere below."""
    client = make_client(cfg, warehouse, run_id)
    batch = generate_rollouts(PROBLEMS, client, RolloutConfig(n=1, max_tokens=MAX_TOKENS, seed=1), run_id)
    completer = Completer(client, cfg=CompleterConfig(max_tokens=MAX_TOKENS), run_id=run_id)
    labels = label_mc_value(batch.for_labeling(), completer, MCValueConfig(k=2))
    client.cache.flush()
    client.close()
    return client, batch, labels


@pytest.fixture(scope="module")
def server():
    with SimServer() as srv:
        yield srv


@pytest.mark.network
@pytest.mark.parametrize("kind", ["sim", "openai", pytest.param("local", marks=pytest.mark.slow)])
def test_the_same_labeling_code_runs_on_every_backend_kind(kind, server, tmp_path):
    base = BackendConfig(model="sim-policy", base_urls=(server.url,), max_retries=2,
                         local=LocalParams(model_path="smollm2-135m-instruct", num_threads=1))  # small and steady on CI
    cfg = base.model_copy(update={"kind": kind})
    warehouse = Warehouse(tmp_path)
    client, batch, labels = label(cfg, warehouse, f"run-{kind}")

    assert not batch.failures and len(batch.rollouts) == 2
    assert all(r["completion_tokens"] > 0 and r["prompt_tokens"] > 0 for r in batch.rollouts)
    assert {lab.labeler for lab in labels} == {"mc_value"}
    assert len(labels) == len(batch.steps) and all(0.0 <= lab.value <= 1.0 for lab in labels)
    total = client.stats.total
    assert total.calls == total.cache_misses > len(batch.rollouts) and total.failures == 0  # MC calls too
    assert warehouse.scalar("SELECT count(*) FROM llm_cache") == total.cache_misses
    if kind == "local":
        assert client.model.startswith("SmolLM2-135M-Instruct")
        assert all(r["true_first_error"] is None for r in batch.rollouts)  # a real model: no ground truth
    else:  # the synthetic policy, in process or over HTTP: ground truth travels with every rollout
        assert all(r["true_first_error"] is not None for r in batch.rollouts)
        for r in batch.rollouts:
            assert r["is_correct"] == (r["true_first_error"] == -1)


def test_a_rerun_of_the_same_config_pays_for_nothing(tmp_path):
    cfg = BackendConfig(kind="sim")
    warehouse = Warehouse(tmp_path)
    first, batch1, labels1 = label(cfg, warehouse, "first")
    again, batch2, labels2 = label(cfg, warehouse, "second")
    assert again.stats.total.calls == 0 and again.stats.total.cache_hits == first.stats.total.calls
    assert [r["text"] for r in batch1.rollouts] == [r["text"] for r in batch2.rollouts]
    assert [lab.value for lab in labels1] == [lab.value for lab in labels2]
