"""Verifiers wired through labeling: rollouts, the Completer and Monte Carlo labels of code problems,
sampled from a real OpenAI-compatible HTTP server on 127.0.0.1 and graded by their unit tests in the
sandbox; the verifier's tag stored with every label and row; hard and soft Monte Carlo values; and
shards written before the new columns still read."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm
from prm_data.labelers.sandbox import isolation_problem
from prm_data.llm.client import LLMClient
from prm_data.llm.openai_backend import OpenAIBackend
from prm_data.run_warehouse import for_run
from prm_data.rollouts import RolloutConfig, generate_rollouts, rollouts_from_rows
from prm_data.schema import TABLES
from prm_data.trees.prefix_tree import PrefixTree
from prm_data.trees.sampling import Completer, CompleterConfig
from prm_data.verifiers.code_tests import CodeTestsConfig
from prm_data.verifiers.registry import Verifiers, VerifiersConfig
from prm_data.warehouse import Warehouse
from scripted_policy_server import ScriptedPolicyServer

pytestmark = [pytest.mark.network,
              pytest.mark.skipif(isolation_problem() is not None, reason=f"no sandbox: {isolation_problem()}")]

PLAN_GOOD, PLAN_BAD = "Plan: add one to x.", "Plan: return x unchanged."
SOLUTIONS = {
    "add_one": [
        [PLAN_GOOD, "```python\ndef add_one(x):\n    return x + 1\n```"],  # passes 3 of 3
        [PLAN_GOOD, "```python\ndef add_one(x):\n    return abs(x) + 1\n```"],  # 2 of 3
        [PLAN_GOOD, "```python\ndef add_one(x):\n    while x < 0:\n        pass\n    return x + 1\n```"],  # 2, 1 hangs
        [PLAN_BAD, "```python\ndef add_one(x):\n    return x\n```"],  # 0 of 3
        [PLAN_BAD, "```python\ndef add_one(x):\n    raise RuntimeError('todo')\n```"],  # 0 of 3
    ],
    "one plus one": [
        ["1 + 1 = 2.", "The answer is \\boxed{2}."],
        ["1 + 1 = 3.", "The answer is \\boxed{3}."],
    ],
}
CODE = {"verifier": "code", "entry_point": "add_one",
        "tests": ["assert add_one(1) == 2", "assert add_one(-1) == 0", "assert add_one(41) == 42"]}
PROBLEMS = [
    {"problem_id": "code-1", "question": "Write add_one(x) returning x + 1.", "answer": SOLUTIONS["add_one"][0][1],
     "metadata": json.dumps({"outcome": CODE})},
    {"problem_id": "math-1", "question": "What is one plus one?", "answer": "2", "metadata": "{}"},
    {"problem_id": "code-untested", "question": "Write add_one(x), untested.", "answer": "x",
     "metadata": json.dumps({"outcome": {"verifier": "code", "entry_point": "add_one"}})},
]
VERIFIERS = Verifiers(VerifiersConfig(code=CodeTestsConfig(test_seconds=0.5, grace_seconds=0.2, load_seconds=1.0)))


@pytest.fixture(scope="module")
def labeled():
    with ScriptedPolicyServer(SOLUTIONS) as server:
        client = LLMClient(OpenAIBackend("scripted", [server.url], api_key_env=None))
        batch = generate_rollouts(PROBLEMS, client, RolloutConfig(n=4, seed=3), "run-v", VERIFIERS)
        rollouts = batch.for_labeling()
        completer = Completer(client, PrefixTree(client.model), CompleterConfig(seed=5), "run-v",
                              verifiers=VERIFIERS)
        hard = label_mc_value(rollouts, completer, MCValueConfig(k=4))
        asked = server.requests
        soft = label_mc_value(rollouts, completer, MCValueConfig(k=4, outcome="soft"))
        asked_again = server.requests - asked
        # OmegaPRM pipelines its asks (one search per problem): grading runs on the worker threads there
        searcher = Completer(client, PrefixTree(client.model), CompleterConfig(seed=9), "run-v", verifiers=VERIFIERS)
        omega = label_omega_prm(rollouts, searcher, OmegaPRMConfig(k=6, search_limit=2, rollout_budget=12))
        yield {"omega": [label.to_row("run-v") for label in omega], "searcher": searcher, "batch": batch, "rollouts": rollouts, "completer": completer, "hard": [label.to_row("run-v") for label in hard],
               "soft": [label.to_row("run-v") for label in soft], "asked_again": asked_again}


def test_a_problem_its_verifier_cannot_grade_is_not_sampled_and_says_why(labeled):
    batch = labeled["batch"]
    assert "code-untested" not in batch.problems
    [failure] = [f for f in batch.failures if f["item_id"] == "code-untested"]
    assert failure["reason"] == "the problem cannot be graded: the problem has no unit tests"


def test_rollouts_are_graded_by_each_problems_verifier_and_carry_its_tag_and_score(labeled):
    rows = labeled["batch"].rollouts
    assert {(r["problem_id"], r["verifier"]) for r in rows} == {("code-1", "code@1"), ("math-1", "math@1")}
    for r in rows:
        if r["problem_id"] == "code-1":
            expected = {SOLUTIONS["add_one"][0][1]: 1.0, SOLUTIONS["add_one"][1][1]: 2 / 3,
                        SOLUTIONS["add_one"][2][1]: 2 / 3}.get(r["text"].split("\n\n", 1)[1], 0.0)
            assert r["score"] == pytest.approx(expected) and r["is_correct"] == (expected == 1.0)
            assert r["final_answer"] is None and len(r["tests_passed"]) == 3
            assert sum(r["tests_passed"]) / 3 == pytest.approx(expected)
        else:
            assert r["score"] == float(r["is_correct"]) and r["final_answer"] in ("2", "3")
            assert r["tests_passed"] is None
    assert {c["verifier"] for c in labeled["batch"].completions} == {"code@1", "math@1"}
    assert {r.outcome_spec.verifier for r in labeled["rollouts"]} == {"code", "math"}
    assert {r.tests_passed is None for r in labeled["rollouts"] if r.problem_id == "math-1"} == {True}
    assert {len(r.tests_passed) for r in labeled["rollouts"] if r.problem_id == "code-1"} == {3}


def test_completions_keep_the_verifiers_outcome_with_per_test_passes(labeled):
    rows = labeled["completer"].completion_rows
    assert rows and {r["verifier"] for r in rows} == {"code@1", "math@1"}
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert any(0.0 < r["score"] < 1.0 for r in rows if r["verifier"] == "code@1")


def test_every_monte_carlo_label_names_the_verifier_that_decided_it(labeled):
    hard = labeled["hard"]
    assert {(r["problem_id"], json.loads(r["evidence"])["verifier"]) for r in hard} == {
        ("code-1", "code@1"), ("math-1", "math@1")}
    by_plan = {json.loads(r["evidence"])["node_id"]: r for r in hard if r["step_index"] == 0}
    tree = labeled["completer"].tree
    values = {tree.nodes[n].step_text: r["value"] for n, r in by_plan.items() if r["problem_id"] == "code-1"}
    assert values[PLAN_BAD] == 0.0 and 0.0 < values[PLAN_GOOD] < 1.0  # some, not all, of its completions pass


def test_soft_values_differ_from_hard_exactly_where_partial_scores_were_counted(labeled):
    assert labeled["asked_again"] == 0  # the soft labels reuse every sample of the tree
    tree = labeled["completer"].tree
    differ = same = 0
    for h, s in zip(labeled["hard"], labeled["soft"]):
        node = tree.nodes[json.loads(h["evidence"])["node_id"]]
        assert h["value"] == pytest.approx(node.mc_successes / node.mc_samples)
        assert s["value"] == pytest.approx(node.mc_score / node.mc_samples)
        assert h["hard_label"] == s["hard_label"]
        partial = node.mc_score != node.mc_successes
        assert (s["value"] != pytest.approx(h["value"])) == partial
        differ += partial
        same += not partial
    assert differ and same  # both cases occur, so the equivalence above was tested both ways


def test_rows_written_before_the_score_and_verifier_columns_still_read(tmp_path, labeled):
    wh = Warehouse(tmp_path / "wh")
    new_rows = [r for r in labeled["batch"].rollouts if r["problem_id"] == "code-1"]
    wh.write_shard("rollouts", new_rows, run_id="run-v", shard="new")
    old_schema = pa.schema([f for f in TABLES["rollouts"] if f.name not in ("score", "verifier", "tests_passed")])
    old_rows = [{k: v for k, v in r.items() if k in old_schema.names} | {"rollout_id": "old-" + r["rollout_id"]}
                for r in labeled["batch"].rollouts if r["problem_id"] == "math-1"]
    pq.write_table(pa.Table.from_pylist(old_rows, schema=old_schema), wh.shard_path("rollouts", "run-v", "old"))
    anchor = wh.tables_dir / "rollouts" / "_schema.parquet"  # as an older version left it
    pq.write_table(old_schema.empty_table(), anchor)
    wh = Warehouse(tmp_path / "wh")  # reopened by this version
    assert pq.read_schema(anchor).equals(TABLES["rollouts"])
    for view in (wh, for_run(wh, "run-v")):
        rows = view.rows("SELECT rollout_id, score, verifier, is_correct FROM rollouts ORDER BY rollout_id")
        assert len(rows) == len(new_rows) + len(old_rows)
        assert {r["verifier"] for r in rows if r["rollout_id"].startswith("old-")} == {None}
        assert {r["verifier"] for r in rows if not r["rollout_id"].startswith("old-")} == {"code@1"}
    wh.write_shard("rollouts", new_rows, run_id="run-n", shard="new")  # a run with no old shard: read by the
    assert len(for_run(wh, "run-n").rows("SELECT verifier FROM rollouts")) == len(new_rows)  # anchor's columns
    read = wh.read_files("rollouts", wh.run_files("rollouts", "run-v")).to_pylist()
    steps = [s | {"rollout_id": "old-" + s["rollout_id"]} for s in labeled["batch"].steps if s["problem_id"] == "math-1"]
    old = rollouts_from_rows(PROBLEMS, [r for r in read if r["rollout_id"].startswith("old-")], steps)
    assert old and all(r.score == float(r.is_correct) and r.outcome_spec.verifier == "math" for r in old)


def test_the_last_step_of_a_graded_code_rollout_is_terminal_and_of_a_math_one_only_with_an_answer(labeled):
    from prm_data.labelers.mc_value import is_terminal

    for r in labeled["rollouts"]:
        assert is_terminal(r, len(r.steps) - 1) and not is_terminal(r, 0)


def test_omega_prm_searches_code_problems_through_the_verifier_on_its_pipelined_path(labeled):
    rows = labeled["omega"]
    assert {(r["problem_id"], json.loads(r["evidence"])["verifier"]) for r in rows} == {
        ("code-1", "code@1"), ("math-1", "math@1")}
    drawn = labeled["searcher"].completion_rows
    assert drawn and {r["verifier"] for r in drawn if r["problem_id"] == "code-1"} == {"code@1"}
    assert all(r["tests_passed"] is not None for r in drawn if r["problem_id"] == "code-1")


def test_a_solution_that_hangs_is_a_wrong_outcome_and_a_failures_row_with_its_reason(labeled):
    """Issue 18: bad code gives a failure row with its reason and never stops the run. The scripted
    third solution loops forever on a negative input: every rollout or continuation graded with a
    timed-out test has a failures row naming it and the timeout; wrong results (an assertion, the
    code's own RuntimeError) are wrong outcomes, not failures."""
    timed_out = [r for r in labeled["batch"].rollouts
                 if r["tests_passed"] is not None and "while x < 0" in r["text"]]
    continuations = [c for c in labeled["completer"].completion_rows if "while x < 0" in c["text"]]
    assert timed_out or continuations, "the scripted server never sent the hanging solution"
    failures = {f["item_id"]: f for f in labeled["batch"].failures + labeled["completer"].failures.rows}
    for row in timed_out:
        assert row["is_correct"] is False and row["tests_passed"] == [True, False, True]
        assert failures[row["rollout_id"]]["stage"] == "rollout"
        assert "timeout" in failures[row["rollout_id"]]["reason"] and "code@" in failures[row["rollout_id"]]["reason"]
    for row in continuations:
        assert "timeout" in failures[row["completion_id"]]["reason"]
        assert failures[row["completion_id"]]["stage"].startswith("label:")
    wrong = [r for r in labeled["batch"].rollouts + labeled["completer"].completion_rows
             if "raise RuntimeError" in r["text"] or "return x\n" in r["text"]]
    assert wrong and not any(r.get("rollout_id", r.get("completion_id")) in failures for r in wrong)
