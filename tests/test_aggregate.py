"""Aggregation policies: consensus, hybrid, mc_only, judge_only -> final_labels rows."""

from __future__ import annotations

import pytest

from prm_data.aggregate import AggregateConfig, aggregate, first_errors
from prm_data.labelers.judge_vote import JudgeSpec, JudgeVoteConfig, judge_solutions
from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.sim_truth import sim_rollouts
from prm_data.labelers.tool_verify import label_tool_verify
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.records import StepLabel
from prm_data.schema import to_table
from prm_data.stepwise_rows import write_final_labels
from prm_data.trees.sampling import Completer
from prm_data.warehouse import Warehouse


def label(rollout: str, step: int, labeler: str, value, hard, confidence: float = 0.0) -> StepLabel:
    return StepLabel("p1", rollout, step, labeler, "1", value, hard, confidence)


def contradiction(rollout: str, step: int, confidence: float = 1.0) -> StepLabel:
    """A tool label saying the step's claim is wrong (confidence 1.0: the claim was parsed exactly and fully)."""
    return label(rollout, step, "tool_verify", 0.0, False, confidence)


def by_step(rows) -> dict[tuple[str, int], dict]:
    return {(r["rollout_id"], r["step_index"]): r for r in rows}


MC = [label("r1", 0, "mc_value", 0.75, True), label("r1", 1, "mc_value", 0.25, True),
      label("r1", 2, "mc_value", 0.0, False)]


def test_consensus_keeps_a_rollout_where_mc_and_judges_agree_on_the_first_error():
    judges = [label("r1", 0, "judge_vote", 0.8, True), label("r1", 1, "judge_vote", 0.6, True),
              label("r1", 2, "judge_vote", 0.2, False)]
    rows = aggregate(MC + judges, AggregateConfig(policy="consensus"), "run")
    assert [r["label"] for r in rows] == [True, True, False]
    assert all(r["kept"] and r["drop_reason"] is None for r in rows)
    assert rows[0]["sources"] == ["mc_value", "judge_vote"] and rows[0]["value"] == 0.75


def test_consensus_drops_a_rollout_where_they_disagree_and_says_why():
    judges = [label("r1", 0, "judge_vote", 0.8, True), label("r1", 1, "judge_vote", 0.2, False),
              label("r1", 2, "judge_vote", 0.2, False)]
    rows = aggregate(MC + judges, AggregateConfig(policy="consensus"), "run")
    assert not any(r["kept"] for r in rows)
    assert rows[0]["drop_reason"] == "consensus: MC first error 2 != judges' first error 1"
    assert [r["label"] for r in rows] == [True, True, False]  # the MC labels stay visible


def test_consensus_needs_both_sources():
    rows = aggregate(MC, AggregateConfig(policy="consensus"), "run", labelers=("mc_value", "judge_vote"))
    assert not any(r["kept"] for r in rows) and "judge_vote: no label for step(s) [0, 1, 2]" in rows[0]["drop_reason"]
    unnamed = aggregate(MC, AggregateConfig(policy="consensus"), "run")  # no judge labeler at all: the role is named
    assert "judge: no label for step(s) [0, 1, 2]" in unnamed[0]["drop_reason"]


def test_hybrid_lets_a_tool_contradiction_override_mc_and_judges():
    judges = [label("r1", i, "judge_vote", 0.9, True) for i in range(3)]
    mc = [label("r1", i, "mc_value", 1.0, True) for i in range(3)]
    tool = [contradiction("r1", 1)]
    rows = aggregate(mc + judges + tool, AggregateConfig(policy="hybrid"), "run")
    assert [r["label"] for r in rows] == [True, False, False]
    assert rows[1]["sources"] == ["tool_verify"] and rows[1]["value"] == 0.0
    assert rows[2]["sources"] == ["mc_value", "judge_vote", "propagated"]  # after the first error
    no_override = aggregate(mc + judges + tool, AggregateConfig(policy="hybrid", tool_override=False), "run")
    assert [r["label"] for r in no_override] == [True, True, True]


def test_hybrid_fuses_mc_value_and_vote_share_with_the_configured_weights():
    rows = [label("r1", 0, "mc_value", 0.2, True), label("r1", 0, "judge_vote", 0.9, True)]
    equal = aggregate(rows, AggregateConfig(policy="hybrid"), "run")[0]
    assert equal["value"] == pytest.approx(0.55) and equal["label"] is True
    mc_heavy = aggregate(rows, AggregateConfig(policy="hybrid", mc_weight=0.9, judge_weight=0.1), "run")[0]
    assert mc_heavy["value"] == pytest.approx(0.27) and mc_heavy["label"] is False
    hard = aggregate(rows, AggregateConfig(policy="hybrid", hybrid_mc_signal="hard"), "run")[0]
    assert hard["value"] == pytest.approx(0.95)


def test_single_source_policies_and_missing_labels():
    judges = [label("r1", 0, "judge_vote", 0.8, True), label("r1", 1, "judge_vote", 0.5, None)]
    only_judges = aggregate(judges, AggregateConfig(policy="judge_only"), "run")
    assert not only_judges[0]["kept"] and "judge_vote: no label for step(s) [1]" in only_judges[0]["drop_reason"]
    mc_only = aggregate(MC, AggregateConfig(policy="mc_only"), "run", num_steps={"r1": 4})
    assert len(mc_only) == 4 and not mc_only[0]["kept"]  # step 3 never labeled: not silently shortened
    soft = aggregate(MC, AggregateConfig(policy="mc_only", mc_signal="soft", mc_threshold=0.5), "run")
    assert [r["label"] for r in soft] == [True, False, False] and all(r["kept"] for r in soft)


def test_final_label_rows_fit_the_schema_and_are_queryable(tmp_path):
    judges = [label("r1", 0, "judge_vote", 0.8, True), label("r1", 1, "judge_vote", 0.2, False),
              label("r1", 2, "judge_vote", 0.2, False)]
    rows = aggregate(MC + judges, AggregateConfig(policy="consensus"), "run-1")
    wh = Warehouse(tmp_path)
    write_final_labels(wh, to_table("final_labels", rows), "run-1", "consensus")
    dropped = wh.rows("SELECT DISTINCT rollout_id, drop_reason FROM final_labels WHERE NOT kept")
    assert dropped == [{"rollout_id": "r1", "drop_reason": rows[0]["drop_reason"]}]
    as_rows = aggregate([l.to_row("run-1") for l in MC + judges], AggregateConfig(policy="consensus"), "run-1")
    assert as_rows == rows  # step_labels rows (JSON evidence) work like StepLabels


@pytest.mark.slow
def test_consensus_filtering_raises_first_error_accuracy_of_kept_rollouts_over_mc_alone():
    rollouts = sim_rollouts(150, per_problem=4, error_rate=0.2, seed=11)
    truth = {r.solution.rollout_id: r.true_first_error for r in rollouts}
    # Monte Carlo at Math-Shepherd's N = 8; its errors here are wrong prefixes that a completion recovers
    # from (the simulator's errors cancel) and good prefixes whose completions all fail
    mc = label_mc_value([r.as_rollout_steps() for r in rollouts],
                        Completer(LLMClient(SimBackend(model="sim-policy", error_rate=0.2))), MCValueConfig(k=8))
    judges = tuple(JudgeSpec(name=f"judge{i}") for i in range(5))
    clients = {f"judge{i}": LLMClient(SimBackend(model=f"sim-judge-{i}")) for i in range(5)}
    votes = judge_solutions([r.solution for r in rollouts], clients,
                            JudgeVoteConfig(mode="first_error", judges=judges), "run")

    def accuracy(policy: str, labels) -> tuple[float, int]:
        fe = first_errors(aggregate(labels, AggregateConfig(policy=policy), "run"))
        return sum(fe[r] == truth[r] for r in fe) / len(fe), len(fe)

    mc_acc, mc_kept = accuracy("mc_only", mc)
    consensus_acc, consensus_kept = accuracy("consensus", mc + votes.labels)
    assert mc_kept == len(rollouts)
    assert consensus_acc >= mc_acc + 0.05
    assert consensus_kept >= 0.6 * len(rollouts)  # it filters, it does not discard everything
    tool = label_tool_verify([r.solution for r in rollouts])
    hybrid_acc, hybrid_kept = accuracy("hybrid", mc + votes.labels + tool)
    assert hybrid_kept == len(rollouts) and hybrid_acc > mc_acc


def test_consensus_still_marks_a_tool_contradicted_step_bad_when_mc_and_judges_both_missed_it():
    mc = [label("r1", i, "mc_value", 1.0, True) for i in range(3)]
    judges = [label("r1", i, "judge_vote", 0.8, True) for i in range(3)]
    tool = [contradiction("r1", 1)]
    rows = aggregate(mc + judges + tool, AggregateConfig(policy="consensus"), "run")
    assert [r["label"] for r in rows] == [True, False, False] and all(r["kept"] for r in rows)
    assert rows[1]["sources"] == ["tool_verify"] and rows[2]["sources"][-1] == "propagated"
    plain = aggregate(mc + judges + tool, AggregateConfig(policy="consensus", tool_override=False), "run")
    assert [r["label"] for r in plain] == [True, True, True]


@pytest.mark.parametrize("policy", ["hybrid", "consensus"])
def test_a_tool_contradiction_below_the_veto_confidence_vetoes_nothing(policy):
    mc = [label("r1", i, "mc_value", 1.0, True) for i in range(3)]
    judges = [label("r1", i, "judge_vote", 0.9, True) for i in range(3)]
    heuristic = [contradiction("r1", 1, confidence=0.6)]  # e.g. a number matched by a heuristic, not parsed
    rows = aggregate(mc + judges + heuristic, AggregateConfig(policy=policy), "run")
    assert [r["label"] for r in rows] == [True, True, True] and all("propagated" not in r["sources"] for r in rows)
    lowered = aggregate(mc + judges + heuristic, AggregateConfig(policy=policy, tool_veto_confidence=0.5), "run")
    assert [r["label"] for r in lowered] == [True, False, False] and lowered[1]["sources"] == ["tool_verify"]


def test_every_mc_labeler_is_fused_by_weighted_vote_and_an_advantage_counts_by_its_hard_label():
    mc = [label("r1", 0, "mc_value", 0.75, True), label("r1", 1, "mc_value", 0.5, True)]
    omega = [label("r1", 0, "omega_prm", 1.0, True), label("r1", 1, "omega_prm", 0.0, False)]
    progress = [label("r1", 0, "progress", 0.25, True), label("r1", 1, "progress", -0.5, False)]
    rows = aggregate(mc + omega + progress, AggregateConfig(policy="mc_only"), "run")
    assert [r["label"] for r in rows] == [True, False]  # step 1: two of three MC labelers call it bad
    assert rows[0]["sources"] == ["mc_value", "omega_prm", "progress"]
    assert rows[0]["value"] == pytest.approx((0.75 + 1.0 + 1.0) / 3)  # progress's advantage enters as its 0/1 label
    heavy = aggregate(mc + omega + progress, AggregateConfig(policy="mc_only", labeler_weights={"mc_value": 3}),
                      "run")
    assert [r["label"] for r in heavy] == [True, True]  # mc_value outweighs the other two


def test_a_policy_that_cannot_use_the_configured_labelers_is_refused_with_the_fix():
    from prm_data.aggregate import check_labelers

    with pytest.raises(ValueError, match=r"needs labels of role judge .*Fix: add one to labeling.labelers, or set "
                                         r"aggregate.policy to hybrid or mc_only"):
        check_labelers(AggregateConfig(policy="consensus"), ["omega_prm"])
    with pytest.raises(ValueError, match=r"hybrid needs labels of role mc or judge"):
        check_labelers(AggregateConfig(policy="hybrid"), ["tool_verify"])
    with pytest.raises(ValueError, match=r"mc_only never reads the labels of \['tool_verify'\].*set aggregate.policy "
                                         r"to hybrid"):
        check_labelers(AggregateConfig(policy="mc_only"), ["mc_value", "tool_verify"])
    check_labelers(AggregateConfig(policy="consensus"), ["mc_value", "omega_prm", "progress", "tool_verify",
                                                         "judge_vote", "rubric"])
