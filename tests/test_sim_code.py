"""The code simulator: its truth is checked by running the tests in a fresh Python, it continues
any code prefix exactly, and it is reached through the sim backend and serve-sim alike."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from prm_data.llm.client import LLMClient
from prm_data.llm.code_mutations import candidate_mutations, scope_at, verified_mutations
from prm_data.llm.factory import BackendConfig, make_backend
from prm_data.llm.openai_backend import CONTINUATION_MODES, OpenAIBackend
from prm_data.llm.sim_code import SimCoder, SimCoderParams
from prm_data.llm.types import GenerationRequest
from prm_data.prompts import render
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.sources.code_bank import generate_code_bank
from prm_data.steps import continuation_steps, join_steps, split_steps

BANK = generate_code_bank(24, seed=31, difficulty=(2, 7))

# The solution's fenced code, then each test, in a fresh Python: plain exec, nothing of ours imported.
RUNNER = r"""
import json, sys
out = []
for item in json.load(sys.stdin):
    text = item["text"]
    code = text.split("```python\n", 1)[1].rsplit("```", 1)[0] if "```python\n" in text else text
    results = []
    for test in item["tests"]:
        scope = {}
        try:
            exec(code, scope)
            exec(test, scope)
            results.append(True)
        except Exception:
            results.append(False)
    out.append(results)
print(json.dumps(out))
"""


def run_tests_in_subprocess(items: list[tuple[str, tuple[str, ...]]]) -> list[list[bool]]:
    payload = json.dumps([{"text": t, "tests": list(tests)} for t, tests in items])
    done = subprocess.run([sys.executable, "-c", RUNNER], input=payload, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def prompt(problem) -> str:
    return render("solve_code.v1", question=problem.question).messages[-1].content


def sample(sim: SimCoder, problem, prefix: str = "", key: str = "0") -> tuple[str, dict]:
    return sim.complete(prompt(problem), prefix, random.Random(f"{problem.question}:{prefix}:{key}"))


@pytest.mark.parametrize("plan_rate", [0.0, 1.0])
def test_the_recorded_truth_is_what_running_the_tests_says(plan_rate):
    sim = SimCoder(SimCoderParams(bug_rate=0.3, plan_rate=plan_rate))
    drawn = [(p, *sample(sim, p, key=str(k))) for p in BANK for k in range(6 if plan_rate == 0 else 2)]
    starts = {split_steps(text, "code_block")[0].startswith("Plan: ") for _, text, _ in drawn}
    assert starts == {plan_rate == 1.0}  # reasoning, then code: the plan is step 0 and never the error
    results = run_tests_in_subprocess([(text, p.tests) for p, text, _ in drawn])
    clean = [all(r) for (_, _, meta), r in zip(drawn, results) if meta["true_first_error"] == -1]
    buggy = [all(r) for (_, _, meta), r in zip(drawn, results) if meta["true_first_error"] != -1]
    assert clean and all(clean)  # no error: passes every test
    assert buggy and not any(buggy)  # an error: fails at least one
    for _, text, meta in drawn:  # the first error is where the first bug was written
        bugs = [i for i, _ in meta["bugs"]]
        assert meta["true_first_error"] == (bugs[0] if bugs else -1)
        assert 0 < len(bugs) or meta["passes_tests"]


def test_bug_rate_zero_writes_the_reference():
    sim = SimCoder(SimCoderParams(bug_rate=0.0))
    for p in BANK:
        text, meta = sample(sim, p)
        assert split_steps(text, "code_block") == list(p.reference_steps)
        assert meta == {"true_first_error": -1, "passes_tests": True, "bugs": []}


def test_bugs_come_in_the_kinds_their_shares_allow():
    sim = SimCoder(SimCoderParams(bug_rate=1.0, off_by_one=0.0, wrong_operator=0.0, wrong_variable=1.0))
    kinds = {kind for p in BANK for k in range(3) for _, kind in sample(sim, p, key=str(k))[1]["bugs"]}
    assert kinds == {"wrong_variable"}


def test_a_mutation_no_test_can_see_is_never_a_bug():
    p = next(p for p in generate_code_bank(60, seed=1, difficulty=4) if p.family == "running_extreme")
    loop = p.body.index(next(b for b in p.body if b.lstrip().startswith("for ")))
    tie = next(t for t in candidate_mutations(p.body[loop], scope_at(p, loop))["off_by_one"]
               if ">=" in t or "<=" in t)  # a tie taken or not: the running extreme is the same
    program = "```python\n" + "\n".join([p.header, *p.body[:loop], tie, *p.body[loop + 1:]]) + "\n```"
    assert all(run_tests_in_subprocess([(program, p.tests)])[0])  # checked by running, not assumed
    assert tie not in verified_mutations(p, loop)["off_by_one"]


def test_a_continuation_keeps_the_prefix_and_adds_the_remaining_steps():
    sim = SimCoder(SimCoderParams(bug_rate=0.3, plan_rate=0.5))
    for p in BANK[:8]:
        steps = split_steps(sample(sim, p)[0], "code_block")
        for k in range(1, len(steps)):
            prefix = join_steps(steps[:k], "code_block")
            text, meta = sample(sim, p, prefix, key="c")
            whole = split_steps(prefix + text, "code_block")
            assert whole[:k] == steps[:k]
            assert continuation_steps(steps[:k], text, "code_block") == whole[k:]
            assert len([s for s in whole if not s.startswith("Plan: ")]) == len(p.reference_steps)


def test_a_bug_in_the_prefix_is_the_first_error_of_every_continuation():
    sim = SimCoder(SimCoderParams(bug_rate=0.0))
    p = BANK[3]
    block = max(range(p.difficulty), key=lambda b: len(verified_mutations(p, b)["wrong_operator"]))
    bug = verified_mutations(p, block)["wrong_operator"][0]
    steps = list(p.reference_steps[: block + 1]) + [bug + ("\n```" if block == p.difficulty - 1 else "")]
    prefix = join_steps(steps, "code_block")
    drawn = [sample(sim, p, prefix, key) for key in "abc"]
    assert [meta["true_first_error"] for _, meta in drawn] == [block + 1] * 3
    assert not any(all(r) for r in run_tests_in_subprocess([(prefix + text, p.tests) for text, _ in drawn]))


def test_a_prefix_step_it_did_not_write_is_an_error_and_is_not_run():
    sim = SimCoder(SimCoderParams(bug_rate=0.0))
    p = BANK[0]
    steps = [p.reference_steps[0], "    import os; os.remove('nothing-here')"]
    text, meta = sample(sim, p, join_steps(steps, "code_block"))
    assert meta["true_first_error"] == 1 and meta["unrecognized_step"] == 1 and meta["passes_tests"] is False


def test_with_fix_rate_one_a_wrong_solution_is_redefined_and_passes_with_its_error_recorded():
    sim = SimCoder(SimCoderParams(bug_rate=0.5, fix_rate=1.0))
    drawn = [(p, *sample(sim, p, key=str(k))) for p in BANK for k in range(3)]
    fixed = [(p, text, meta) for p, text, meta in drawn if meta["true_first_error"] != -1]
    assert fixed
    results = run_tests_in_subprocess([(text, p.tests) for p, text, _ in fixed])
    assert all(all(r) for r in results) and all(meta["passes_tests"] for _, _, meta in fixed)


def test_samples_are_a_pure_function_of_the_request():
    sim = SimCoder(SimCoderParams(bug_rate=0.3))
    assert [sample(sim, p, key="k") for p in BANK] == [sample(sim, p, key="k") for p in BANK]


def test_a_question_that_is_not_from_the_bank_gets_a_refusal_with_its_reason():
    text, meta = SimCoder().complete("Task: write a web server", "", random.Random(0))
    assert meta == {"true_first_error": 0, "reason": "not a code-bank problem"}


def test_sim_coder_is_chosen_by_its_model_name_and_reports_its_assumptions():
    backend = make_backend(BackendConfig(kind="sim", model="sim-coder", sim={"coder": {"bug_rate": 0.2}}))
    assert backend.model == "sim-coder" and backend.assumptions()["bug_rate"] == 0.2
    p = BANK[1]
    req = GenerationRequest(messages=render("solve_code.v1", question=p.question).messages, n=2, seed=3)
    with LLMClient(backend) as client:
        [result] = client.generate([req])
    assert result.ok and all("```python\ndef " in s.text for s in result.samples)
    assert all("true_first_error" in s.metadata for s in result.samples)


@pytest.fixture(scope="module")
def server():
    with SimServer(ServeSimConfig(coder=SimCoderParams(bug_rate=0.0))) as srv:
        yield srv


@pytest.mark.network
@pytest.mark.parametrize("mode", CONTINUATION_MODES)
def test_serve_sim_continues_a_code_prefix_in_every_continuation_mode(server, mode):
    p = BANK[2]
    steps = list(p.reference_steps)
    prefix = join_steps(steps[:2], "code_block")
    messages = render("solve_code.v1", question=p.question).messages
    with LLMClient(OpenAIBackend("sim-coder", [server.url], continuation=mode)) as client:
        [result] = client.generate([GenerationRequest(messages=messages, assistant_prefix=prefix, seed=1)])
    assert result.ok, result.error
    text = result.samples[0].text
    assert continuation_steps(steps[:2], text, "code_block") == steps[2:]
    assert result.samples[0].metadata["true_first_error"] == -1
