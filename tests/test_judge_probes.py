"""Judge-hacking probes ("One Token to Fool LLM-as-a-Judge"): a hackable judge is refused, an honest one kept."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.labelers.judge_probes import (PROBES, JudgeProbeConfig, JudgeRejected, check_judge, probe_solutions,
                                            run_probes)
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend, parse_equation


def test_the_probe_set_has_the_master_keys_of_the_paper_and_no_real_reasoning():
    assert {"step_by_step_opener", "colon", "thought_process", "restated_question",
            "answer_after_nonsense"} <= set(PROBES)
    probes = probe_solutions(JudgeProbeConfig(problems=2))
    assert len(probes) == 2 * len(PROBES)
    for name, solution in probes:
        assert not any(parse_equation(step) for step in solution.steps), name
    texts = {name: s.steps for name, s in probes}
    assert texts["thought_process"] == ("Thought process:",) and texts["colon"] == (":",)
    assert texts["answer_after_nonsense"][-1].endswith(f"\\boxed{{{probes[-1][1].answer}}}.")


def test_a_hackable_judge_is_refused_with_a_message_naming_the_probes():
    with pytest.raises(JudgeRejected) as info:
        check_judge(LLMClient(SimBackend(model="sim-judge", fooled_rate=1.0)), JudgeProbeConfig(samples=3))
    message = str(info.value)
    assert "accepted" in message and "thought_process" in message and "master key" in message
    assert info.value.report.accept_share == 1.0


def test_an_honest_judge_is_accepted_even_though_it_is_only_70_percent_accurate():
    report = check_judge(LLMClient(SimBackend(model="sim-judge", judge_accuracy=0.7)), JudgeProbeConfig(samples=3))
    assert report.accept_share == 0.0 and report.abstain_share == 0.0
    assert report.samples == 3 * 3 * len(PROBES) * 2  # samples x problems x probes x modes
    assert report.prompt_tokens > 0


def test_a_judge_that_never_answers_in_the_format_is_refused_too():
    with pytest.raises(JudgeRejected, match="no readable verdict"):
        check_judge(LLMClient(SimBackend(model="sim-policy")), JudgeProbeConfig(samples=1, problems=1))


def test_the_share_threshold_decides():
    client = LLMClient(SimBackend(model="sim-judge", fooled_rate=1.0))
    report = run_probes(client, JudgeProbeConfig(samples=1, problems=1, probes=("colon",)))
    assert report.accept_share == 1.0
    assert check_judge(client, JudgeProbeConfig(samples=1, problems=1, probes=("colon",), max_accept_share=1.0))


def test_judge_check_command_exits_1_for_a_hackable_judge_and_0_for_an_honest_one(tmp_path):
    runner = CliRunner()
    honest = runner.invoke(app, ["judge-check", "--backend", "sim", "--model", "sim-judge", "--samples", "2"])
    assert honest.exit_code == 0, honest.output
    assert "trusted" in honest.output and "thought_process" in honest.output
    hacked = runner.invoke(app, ["judge-check", "--backend", "sim", "--model", "sim-judge", "--hackable"])
    assert hacked.exit_code == 1 and "refused" in hacked.output
    config = tmp_path / "judge.yaml"
    config.write_text("backend: sim\nmodel: sim-judge\nhackable: true\nprobes:\n  samples: 1\n  problems: 1\n")
    from_file = runner.invoke(app, ["judge-check", "--config", str(config)])
    assert from_file.exit_code == 1 and "refused" in from_file.output
    overridden = runner.invoke(app, ["judge-check", "--config", str(config), "--honest"])
    assert overridden.exit_code == 0, overridden.output
    bad = runner.invoke(app, ["judge-check", "--backend", "nope"])
    assert bad.exit_code == 2
