"""Code through the shared machinery: the shipped code config, and the completer and prefix tree on
code prefixes (continuations split in context, indentation kept in the tree)."""

from __future__ import annotations

from pathlib import Path

from prm_data.config import RunConfig
from prm_data.llm.factory import make_client
from prm_data.llm.types import GenerationRequest
from prm_data.rollouts import RolloutSteps, solve_prompt
from prm_data.sources import load_problems
from prm_data.sources.code_bank import parse_code_question
from prm_data.steps import join_steps, split_steps
from prm_data.trees.sampling import Ask, Completer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "code_sim.yaml"
LOCAL_CONFIG = CONFIG.with_name("code_local.yaml")


def test_the_code_sim_config_loads_and_wires_the_code_parts_together():
    config = RunConfig.from_yaml(CONFIG)
    assert config.rollouts.step_policy == config.labeling.completer.step_policy == "code_block"
    assert config.rollouts.prompt_version == config.labeling.completer.prompt_version == "solve_code.v1"
    assert config.labeling.labelers == ("mc_value", "omega_prm")
    rows = load_problems(config.problems.source, config.problems.mapping, run_id="t")
    assert len(rows) == 24 and {r["source"] for r in rows} == {"code_bank"}
    # the policy it names is the code simulator, and it finds the problem in the prompt the config renders
    with make_client(config.policy) as client:
        assert client.model == "sim-coder"
        prompt = solve_prompt(config.rollouts.prompt_version, rows[0]["question"])
        assert parse_code_question(rows[0]["question"]) is not None
        [result] = client.generate([GenerationRequest(messages=prompt.messages, n=2, seed=0)])
    assert result.ok
    for s in result.samples:  # reasoning (a plan, half the time), then the fenced function
        steps = split_steps(s.text, "code_block")
        code = [x for x in steps if not x.startswith("Plan: ")]
        assert code[0].startswith("```python\ndef ") and code[-1].endswith("```") and len(steps) - len(code) <= 1


def test_the_real_local_code_config_loads_and_wires_the_bundled_model_to_the_code_parts():
    """configs/code_local.yaml (docs/code.md, "A real local run"): the whole run is too slow for CI, so
    this checks what it is made of: the bundled model on both roles, code steps and the code prompt on
    both, a stop that ends an answer at its closing fence, and a prompt that renders the task."""
    config = RunConfig.from_yaml(LOCAL_CONFIG)
    assert config.policy.kind == "local" and config.completer_backend == config.policy
    assert config.policy.local.model_path == "qwen2.5-coder-0.5b-instruct"
    assert config.rollouts.step_policy == config.labeling.completer.step_policy == "code_block"
    assert config.rollouts.prompt_version == config.labeling.completer.prompt_version == "solve_code.v2"
    assert config.rollouts.stop == config.labeling.completer.stop == ("```\n",)
    assert config.rollouts.skip_uniform and config.labeling.labelers == ("mc_value",)
    assert config.labeling.config_of("mc_value").terminal_outcome
    assert config.verifiers.code.budget_seconds < 10.0  # a looping solution costs at most its budget
    rows = load_problems(config.problems.source, config.problems.mapping, run_id="t")
    assert len(rows) == 12 and {r["difficulty"] for r in rows} <= {3, 4}
    prompt = solve_prompt(config.rollouts.prompt_version, rows[0]["question"])
    assert prompt.messages[-1].content.endswith(f"Task: {rows[0]['question']}\nAnswer:")
    example = prompt.messages[-1].content.split("```python\n")[1].split("```")[0]
    assert split_steps("```python\n" + example + "```", "code_block")[0] == "```python\ndef longest_capitalized(words):"
    compile(example, "example", "exec")  # the worked example is valid Python


def test_the_completer_continues_a_code_prefix_and_the_tree_keeps_every_step_exact():
    config = RunConfig.from_yaml(CONFIG)
    row = load_problems("code_bank:1:5:3", run_id="t")[0]
    reference = split_steps(row["reference_solution"], "code_block")
    with make_client(config.completer_backend) as client:
        completer = Completer(client, cfg=config.labeling.completer)
        completer.add_rollouts([RolloutSteps(row["problem_id"], "r-1", row["question"], tuple(reference))])
        prefix = tuple(reference[:3])
        [got] = completer.sample([Ask(row["problem_id"], row["question"], row["answer"], prefix, 4)], "test")
    assert len(got) == 4
    for completion, stored in zip(got, completer.completion_rows):
        whole = split_steps(join_steps(list(prefix), "code_block") + stored["text"], "code_block")
        assert list(prefix) + list(completion.steps) == whole  # body statements, not one indented blob
        assert len(whole) == len(reference)
        node = completer.tree.find(row["problem_id"], whole)
        assert node is not None and completer.tree.prefix_steps(node) == whole  # indentation kept
    # the prefix's node is shared with the rollout's, and counts the four continuations
    assert completer.tree.find(row["problem_id"], prefix).mc_samples == 4
