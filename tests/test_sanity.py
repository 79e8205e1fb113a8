"""The reference-free sanity check: each labeler against exact arithmetic, on a real warehouse."""

from __future__ import annotations

import pytest

from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.sim_truth import sim_rollouts
from prm_data.labelers.tool_verify import label_tool_verify
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.sanity import arithmetic_sanity
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    """Two runs on the same rollouts: Monte Carlo from a strong completer (2 % errors per step) and a hopeless one (90 %)."""
    wh = Warehouse(tmp_path_factory.mktemp("wh"))
    rollouts = sim_rollouts(40, per_problem=2, error_rate=0.2, seed=12, difficulty=(4, 6), ops="+-*")
    tool = label_tool_verify([r.solution for r in rollouts])
    for run_id, completer in (("strong", SimBackend(model="sim-completer", error_rate=0.02)),
                              ("weak", SimBackend(model="sim-completer", error_rate=0.9))):
        mc = label_mc_value([r.as_rollout_steps() for r in rollouts], Completer(LLMClient(completer)),
                            MCValueConfig(k=8))
        wh.write_shard("step_labels", [l.to_row(run_id) for l in tool + mc], run_id=run_id, shard="labels")
    return wh


def test_a_strong_completer_agrees_with_exact_arithmetic_and_raises_no_warning(warehouse):
    report = arithmetic_sanity(warehouse, "strong")
    (mc,) = [r for r in report.labelers if r.labeler == "mc_value"]
    assert report.fully_checked_steps >= 100 and mc.steps == report.fully_checked_steps
    assert mc.verified_steps > 0 and mc.contradicted_steps > 0
    assert mc.agreement > 0.7 and report.warnings == ()


def test_a_weak_completer_is_flagged_because_it_calls_verified_steps_bad(warehouse):
    report = arithmetic_sanity(warehouse, "weak")
    (mc,) = [r for r in report.labelers if r.labeler == "mc_value"]
    assert mc.agreement < 0.5 and mc.agreement_on_verified < 0.5
    assert mc.agreement < arithmetic_sanity(warehouse, "strong").labelers[0].agreement - 0.3
    assert len(report.warnings) == 1 and report.warnings[0].startswith("mc_value disagrees with exact arithmetic")


def test_steps_after_a_contradicted_step_are_not_compared(warehouse):
    rows = warehouse.rows("SELECT rollout_id, step_index, json_extract_string(evidence, '$.verdict') AS v "
                          "FROM step_labels WHERE run_id = 'strong' AND labeler = 'tool_verify' "
                          "ORDER BY rollout_id, step_index")
    checked, blocked = 0, {}
    for r in rows:
        if not blocked.get(r["rollout_id"]) and r["v"] in ("verified", "contradicted"):
            checked += 1
        if r["v"] != "verified":
            blocked[r["rollout_id"]] = True
    assert arithmetic_sanity(warehouse, "strong").fully_checked_steps == checked < len(rows)


def test_a_run_without_tool_labels_says_the_check_could_not_run(tmp_path):
    report = arithmetic_sanity(Warehouse(tmp_path), "nothing")
    assert report.labelers == () and "no tool_verify labels" in report.warnings[0]
