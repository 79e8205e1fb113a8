"""VeRPO end to end: a run on code (the code simulator, the sandboxed code verifier), its stored
values checked against what the per-test passes of its stored completions imply, recomputed here from
the warehouse's `completions` rows, not with verpo's own functions."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from prm_data.config import RunConfig
from prm_data.labelers.verpo import VeRPOConfig, label_verpo
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.pipeline.serial import run_serial
from prm_data.rollouts import RolloutConfig, generate_rollouts
from prm_data.sources.bank import generate_bank
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
K = 3


@pytest.fixture(scope="module")
def code_run(tmp_path_factory) -> Warehouse:
    """configs/code_sim.yaml shrunk to 2 problems x 3 rollouts, labeled by verpo alone, run by the serial
    executor (what `prm-data run --serial` runs) in this process."""
    root = tmp_path_factory.mktemp("verpo_run")
    config = yaml.safe_load((REPO / "configs" / "code_sim.yaml").read_text())
    config["problems"]["source"] = "code_bank:2:3-4:5"
    config["rollouts"]["n"] = 3
    # more bugs than the default 0.12, so that continuations from right prefixes fail some tests too and the
    # pass rates are not all 0 or 1 (a test setting: nothing here is compared with a simulator constant)
    for side in ("policy", "completer"):
        config[side]["sim"]["coder"]["bug_rate"] = 0.3
    config["labeling"] = {**config["labeling"], "labelers": ["verpo"], "verpo": {"k": K}}
    config["labeling"].pop("mc_value"), config["labeling"].pop("omega_prm")
    config.update(warehouse=str(root / "wh"), reports_dir=str(root / "reports"), export={"enabled": False})
    summary = run_serial(RunConfig.model_validate(config))
    assert summary["labelers"], summary
    return Warehouse(root / "wh")


def _stored(wh: Warehouse):
    labels = wh.rows("SELECT * FROM step_labels WHERE labeler = 'verpo'")
    completions = wh.rows("SELECT * FROM completions WHERE purpose = 'verpo'")
    return labels, completions


def _passes(row: dict, n_tests: int) -> list[bool]:
    """A completion's per-test passes; a program that never ran its tests (no results stored) passed none."""
    return list(row["tests_passed"]) if row["tests_passed"] else [False] * n_tests


def test_every_step_of_every_rollout_gets_a_value_from_its_k_continuations(code_run):
    labels, completions = _stored(code_run)
    steps = code_run.scalar("SELECT count(*) FROM steps")
    assert steps > 0 and len(labels) == steps
    assert all(json.loads(l["evidence"])["samples"] == K for l in labels)
    assert sum(l["calls"] for l in labels) == len(completions) == K * steps
    assert sum(l["completion_tokens"] for l in labels) == sum(c["completion_tokens"] for c in completions)


def test_test_weights_are_the_difficulties_of_the_problems_stored_per_test_passes(code_run):
    labels, completions = _stored(code_run)
    by_problem = defaultdict(list)
    for c in completions:
        by_problem[c["problem_id"]].append(c)
    some_test_split_the_group = False
    for problem_id, group in by_problem.items():
        n_tests = max(len(c["tests_passed"] or ()) for c in group)
        passes = [_passes(c, n_tests) for c in group]
        rates = [sum(p[j] for p in passes) / len(passes) for j in range(n_tests)]
        some_test_split_the_group |= any(0 < r < 1 for r in rates)
        difficulty = [1 - r for r in rates]
        weights = [d / sum(difficulty) for d in difficulty] if sum(difficulty) else [1 / n_tests] * n_tests
        for label in (l for l in labels if l["problem_id"] == problem_id):
            evidence = json.loads(label["evidence"])
            assert evidence["pass_rates"] == pytest.approx(rates)
            assert evidence["test_weights"] == pytest.approx(weights)
    assert some_test_split_the_group, "every test passed by all or none: the weights were not exercised"


def test_step_values_are_the_mean_rewards_of_the_stored_continuations(code_run):
    labels, completions = _stored(code_run)
    weights = {l["problem_id"]: json.loads(l["evidence"])["test_weights"] for l in labels}
    rewards_at = defaultdict(list)  # node -> reward of each continuation sampled from it
    for c in completions:
        w = weights[c["problem_id"]]
        passed = _passes(c, len(w))
        assert c["is_correct"] == all(passed)  # the outcome is "every test passed"
        dense = 1.0 if c["is_correct"] else sum(wj for wj, ok in zip(w, passed) if ok)
        rewards_at[c["node_id"]].append((float(c["is_correct"]) + dense) / 2)  # dense_weight 1
    labels_at = defaultdict(list)
    for l in labels:
        labels_at[json.loads(l["evidence"])["node_id"]].append(l)
    partial = 0
    for node, node_labels in labels_at.items():
        rewards = rewards_at[node]
        # rollouts that share a prefix each drew their own k continuations of it: together, all of the node's
        assert len(rewards) == K * len(node_labels)
        mean_value = sum(l["value"] for l in node_labels) / len(node_labels)
        assert mean_value == pytest.approx(sum(rewards) / len(rewards))
        assert any(l["hard_label"] for l in node_labels) == any(r == 1.0 for r in rewards)
        partial += any(0 < r < 0.5 + 1e-9 for r in rewards)
    assert partial, "no continuation passed only some tests: the dense part was not exercised"


def test_on_a_problem_without_unit_tests_the_value_is_the_plain_success_rate():
    # math has no per-test results, so the dense part has nothing to weigh: verpo is Math-Shepherd's soft estimate
    problems = [p.to_row("t") for p in generate_bank(3, seed=3, difficulty=(3, 4), ops="+-*")]
    rollouts = generate_rollouts(problems, LLMClient(SimBackend()), RolloutConfig(n=2), "t").for_labeling()
    completer = Completer(LLMClient(SimBackend()), run_id="t")
    labels = list(label_verpo(rollouts, completer, VeRPOConfig(k=4)))
    successes, values = defaultdict(list), defaultdict(list)
    for row in completer.completion_rows:
        successes[row["node_id"]].append(float(row["is_correct"]))
    for l in labels:
        values[l.evidence["node_id"]].append(l.value)
        assert l.evidence["test_weights"] == [] and l.evidence["mean_dense"] == l.value
    assert labels and {0.0, 1.0} <= {v for vs in values.values() for v in vs}  # right and wrong prefixes both
    for node, node_values in values.items():
        assert sum(node_values) / len(node_values) == pytest.approx(sum(successes[node]) / len(successes[node]))
