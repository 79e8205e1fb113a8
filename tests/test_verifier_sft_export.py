"""The `verifier_sft` config: critiques whose verdicts agree with the final labels, in chat format, with the evidence.

On a real sim run (tests/sim_warehouse.py): the simulated judge is right 70% of the time,
so some of its votes disagree with the final labels and must be filtered out; the tool
verifier's arithmetic checks must appear in the critiques. On the hand-made fixture: a
judge's own words about a step are carried into that step's paragraph.
"""

from __future__ import annotations

import json
import re

import pytest
from export_fixture import RUN, build_fixture_warehouse
from sim_warehouse import build_sim_warehouse

from prm_data.export import ExportConfig, load_export
from prm_data.export_run import run_export
pytestmark = pytest.mark.slow
BOXED = re.compile(r"The step is \\boxed\{(correct|incorrect)\}\.")


@pytest.fixture(scope="module")
def sim_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifier")
    wh = build_sim_warehouse(root, problems=12, rollouts=4)
    result = run_export(wh, root / "export", ExportConfig(test_fraction=0.0, formats=("stepwise", "verifier_sft")))
    card = json.loads((result.path / "export.json").read_text())["trainer_formats"]["verifier_sft"]
    return wh, result.path, card


def test_every_kept_critique_gives_each_step_the_verdict_of_its_final_label(sim_export):
    _, path, _ = sim_export
    labels = {r["rollout_id"]: r for r in load_export(path, "stepwise")["train"]}
    rows = load_export(path, "verifier_sft")["train"]
    assert len(rows) > 5
    for row in rows:
        truth = labels[row["rollout_id"]]
        assert row["step_verdicts"] == truth["labels"]
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        critique = row["messages"][2]["content"]
        assert BOXED.findall(critique) == ["correct" if ok else "incorrect" for ok in truth["labels"]]
        user = row["messages"][1]["content"]
        assert truth["prompt"] in user
        for k in range(len(truth["completions"])):
            assert f"Step {k + 1}: " in user


def test_the_card_counts_every_candidate_once_and_the_filter_matches_a_recount_from_the_judgments(sim_export):
    wh, path, card = sim_export
    stepwise = {r["rollout_id"]: r["labels"] for r in load_export(path, "stepwise")["train"]}
    judgments = [j for j in wh.rows("SELECT rollout_id, step_verdicts FROM judgments WHERE status = 'vote'")
                 if j["rollout_id"] in stepwise]
    tool_checked = {r["rollout_id"] for r in wh.rows("SELECT DISTINCT rollout_id FROM step_labels "
                                                      "WHERE labeler = 'tool_verify'")} & set(stepwise)
    assert card["candidates"] == len(judgments) + len(tool_checked)
    assert card["candidates_by_critic"]["tool_verify"] == len(tool_checked)
    assert card["kept"] + sum(card["not_kept"].values()) == card["candidates"]
    disagreeing = sum(1 for j in judgments
                      if j["step_verdicts"][:len(stepwise[j["rollout_id"]])] != stepwise[j["rollout_id"]])
    assert disagreeing > 0  # the sim judge is wrong 30% of the time: the filter has work to do
    tool_disagreeing = card["not_kept"]["disagrees_with_final_labels"] - disagreeing
    assert 0 <= tool_disagreeing <= len(tool_checked)
    assert card["kept"] == len(load_export(path, "verifier_sft")["train"])


def test_critiques_carry_the_tool_verifiers_checks_of_each_step(sim_export):
    wh, path, _ = sim_export
    evidence = {(r["rollout_id"], r["step_index"]): json.loads(r["evidence"])
                for r in wh.rows("SELECT rollout_id, step_index, evidence FROM step_labels "
                                 "WHERE labeler = 'tool_verify'")}
    seen = 0
    for row in load_export(path, "verifier_sft")["train"]:
        paragraphs = row["messages"][2]["content"].split("\n\n")
        for k, paragraph in enumerate(paragraphs[:row["num_steps"]]):
            for check in evidence[(row["rollout_id"], k)]["checks"]:
                if check.get("ok") is not None and "computed" in check:
                    assert f"Checking {check['claim']}: it evaluates to {check['computed']}" in paragraph
                    seen += 1
    assert seen > 10


def test_identical_critiques_of_one_rollout_are_kept_once(sim_export):
    _, path, card = sim_export
    rows = load_export(path, "verifier_sft")["train"]
    pairs = [(r["rollout_id"], r["messages"][2]["content"]) for r in rows]
    assert len(pairs) == len(set(pairs))
    assert card["not_kept"]["same_critique_as_a_kept_one"] > 0  # judges that wrote only verdicts


def test_a_judges_words_about_a_step_go_into_that_steps_paragraph_and_wrong_votes_are_dropped(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    base = {"run_id": RUN, "problem_id": "p-1", "rollout_id": "r-2", "judge": "critic", "model": "m",
            "mode": "per_step", "prompt_version": "judge_step.v1", "status": "vote"}
    wh.write_shard("judgments", [
        {**base, "judgment_id": "j-good", "sample_index": 0, "step_verdicts": [True, False, False],
         "raw_text": "step_0: correct - 3 + 4 is 7.\nstep_1: incorrect: 7 * 2 is 14, not 15.\nstep_2: incorrect"},
        {**base, "judgment_id": "j-wrong", "sample_index": 1, "step_verdicts": [True, True, True],
         "raw_text": "step_0: correct\nstep_1: correct\nstep_2: correct"},
        {**base, "judgment_id": "j-abstain", "sample_index": 2, "status": "abstain", "step_verdicts": None,
         "raw_text": "no idea"},
    ], run_id=RUN, shard="more-judgments")
    result = run_export(wh, tmp_path / "export", ExportConfig(test_fraction=0.0, formats=("verifier_sft",)))
    card = json.loads((result.path / "export.json").read_text())["trainer_formats"]["verifier_sft"]
    rows = [r for r in load_export(result.path, "verifier_sft")["train"] if r["rollout_id"] == "r-2"]
    [row] = rows  # r-2's exported steps are labelled [T, F]: j-good agrees, j-wrong does not
    step1, step2, closing = row["messages"][2]["content"].split("\n\n")
    assert step1 == "Step 1: 3 + 4 is 7. The step is \\boxed{correct}."
    assert step2 == "Step 2: 7 * 2 is 14, not 15. The step is \\boxed{incorrect}."
    assert closing == "The first incorrect step is step 2."
    assert card["candidates_by_critic"] == {"judge:critic": 2, "judge:sim-judge": 1}  # the abstention is no candidate
    assert card["not_kept"]["disagrees_with_final_labels"] == 1 and card["kept"] == 2


def test_a_rollout_the_tool_could_not_check_is_not_kept_for_want_of_a_verdict(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    wh.write_shard("step_labels", [
        {"run_id": RUN, "problem_id": "p-4", "rollout_id": "r-6", "step_index": i, "labeler": "tool_verify",
         "labeler_version": "1", "value": value, "hard_label": hard, "prompt_tokens": 0, "completion_tokens": 0,
         "calls": 0, "evidence": json.dumps({"verdict": verdict, "checks": []})}
        for i, (verdict, value, hard) in enumerate([("verified", 1.0, True), ("not_checkable", None, None)])],
        run_id=RUN, shard="tool")
    result = run_export(wh, tmp_path / "export", ExportConfig(test_fraction=0.0, formats=("verifier_sft",)))
    card = json.loads((result.path / "export.json").read_text())["trainer_formats"]["verifier_sft"]
    assert card["candidates_by_critic"]["tool_verify"] == 1
    assert card["not_kept"]["no_verdict_for_a_step"] == 1
    assert "r-6" not in {r["rollout_id"] for r in load_export(result.path, "verifier_sft")["train"]}


def test_rollouts_no_critic_looked_at_give_no_rows_and_a_card_that_says_so(tmp_path):
    import pyarrow.compute as pc

    from prm_data.export import _query, resolve_policy
    from prm_data.exports.verifier_sft import build_verifier_rows

    wh = build_fixture_warehouse(tmp_path / "wh")
    stepwise = _query(wh, "stepwise", resolve_policy(wh, ExportConfig()))
    unjudged = stepwise.filter(pc.not_equal(stepwise["rollout_id"], "r-1"))  # j-1 judged r-1 only
    table, card = build_verifier_rows(wh, unjudged)
    assert table.num_rows == 0 and unjudged.num_rows > 0
    assert card["candidates"] == 0 and card["kept"] == 0 and set(card["not_kept"].values()) == {0}
