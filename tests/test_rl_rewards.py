"""The step-reward transforms each keep the property their paper relies on, on many random exports.

Property tests: every transform runs on random ragged exports (random step counts,
empty rollouts included, random values in [0, 1], random outcomes) drawn from seeded
generators, and the defining property is checked on every rollout.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from prm_data.exports.rl_rewards import (RewardTransformConfig, TRANSFORMS, apply_transform, clip_rewards,
                                         delta_rewards, gated_rewards, potential_shaping, progress_attribution)

SEEDS = range(40)


def random_export(seed: int):
    """(values, offsets, outcome, start potential) of a random export: 0 to 12 steps per rollout."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 13, rng.integers(1, 30))
    offsets = np.r_[0, np.cumsum(counts)]
    values = rng.random(offsets[-1])
    if seed % 4 == 0:  # hard labels only: values of exactly 0 and 1, ties everywhere
        values = np.round(values)
    outcome = (rng.random(len(counts)) < 0.5).astype(float)
    return values, offsets, outcome, rng.random(len(counts))


def per_rollout(flat, offsets):
    return [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_bounds_every_reward_and_keeps_the_order_of_steps(seed):
    values, _, _, _ = random_export(seed)
    threshold, upper = np.random.default_rng(seed).random(2)
    clipped = clip_rewards(values, threshold, upper)
    assert (clipped <= upper).all()
    order = np.argsort(values, kind="stable")
    assert (np.diff(clipped[order]) >= 0).all()  # monotone: a better step never gets less
    assert np.allclose(clipped[values - threshold < upper], (values - threshold)[values - threshold < upper])


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_at_zero_means_more_steps_never_raise_the_return(seed):
    values, offsets, _, _ = random_export(seed)
    for rollout in per_rollout(clip_rewards(values, 0.5, 0.0), offsets):
        returns = np.cumsum(rollout)  # the return after the first k steps
        assert (np.diff(returns) <= 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_delta_telescopes_so_every_return_to_go_is_that_steps_own_reward(seed):
    values, offsets, _, _ = random_export(seed)
    deltas = delta_rewards(values, offsets)
    for raw, d in zip(per_rollout(values, offsets), per_rollout(deltas, offsets)):
        return_to_go = np.cumsum(d[::-1])[::-1]
        assert np.allclose(return_to_go, raw)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("terminal_zero", [True, False])
def test_potential_shaping_sums_to_the_discounted_end_potential_minus_the_start(seed, terminal_zero):
    values, offsets, _, start = random_export(seed)
    gamma = float(np.random.default_rng(seed).uniform(0.5, 1.0))
    shaped = potential_shaping(values, offsets, start, gamma, terminal_potential_zero=terminal_zero)
    for i, (raw, r) in enumerate(zip(per_rollout(values, offsets), per_rollout(shaped, offsets))):
        if not len(raw):
            continue
        end = 0.0 if terminal_zero else raw[-1]
        discounted = sum(gamma ** t * r_t for t, r_t in enumerate(r))
        assert discounted == pytest.approx(gamma ** len(raw) * end - start[i])


# A small decision problem: from the question, a policy picks a first step, then a second; each of the
# four solutions has an outcome reward, and every prefix has a value (the potential). The values are
# deliberately misleading (the step valued highest leads to the worst outcomes).
TREE = {"a": 0.9, "b": 0.2, "aa": 0.95, "ab": 0.8, "ba": 0.1, "bb": 0.3}
OUTCOME = {"aa": 0.0, "ab": 0.2, "ba": 1.0, "bb": 0.6}


def best_paths(step_rewards, gamma):
    """The ranking of the four solutions by discounted return, outcome reward on the last step."""
    def ret(path):
        rewards = step_rewards(path)
        rewards[-1] += OUTCOME[path]
        return sum(gamma ** t * r for t, r in enumerate(rewards))
    return sorted(OUTCOME, key=ret, reverse=True)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_potential_shaping_keeps_the_ranking_of_solutions_where_adding_raw_values_does_not(gamma):
    def shaped(path):
        values = np.array([TREE[path[:k + 1]] for k in range(len(path))])
        return list(potential_shaping(values, np.array([0, len(values)]), np.array([0.5]), gamma))

    def raw(path):
        return [TREE[path[:k + 1]] for k in range(len(path))]

    unshaped = best_paths(lambda path: [0.0] * len(path), gamma)
    assert best_paths(shaped, gamma) == unshaped == ["ba", "bb", "ab", "aa"]
    assert best_paths(raw, gamma) != unshaped  # the control: a reward that is not potential-based changes it


@pytest.mark.parametrize("seed", SEEDS)
def test_gated_rewards_are_zero_when_the_outcome_fails_the_gate_and_untouched_when_it_passes(seed):
    values, offsets, outcome, _ = random_export(seed)
    gated = gated_rewards(values, offsets, outcome, gate=1.0)
    for ok, raw, g in zip(outcome, per_rollout(values, offsets), per_rollout(gated, offsets)):
        assert (g == (raw if ok >= 1.0 else 0.0)).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_progress_attribution_sums_to_the_outcome_in_proportion_to_each_steps_value(seed):
    values, offsets, outcome, _ = random_export(seed)
    outcome = outcome * np.random.default_rng(seed).uniform(0.5, 2.0, len(outcome))  # not only 0 and 1
    attributed = progress_attribution(values, offsets, outcome)
    for r, raw, a in zip(outcome, per_rollout(values, offsets), per_rollout(attributed, offsets)):
        if not len(raw):
            continue
        assert a.sum() == pytest.approx(r)
        if raw.sum() > 0:
            assert np.allclose(a * raw.sum(), raw * r)
        else:
            assert np.allclose(a, r / len(raw))


def test_every_transform_gives_one_finite_reward_per_step_and_leaves_its_input_alone():
    values, offsets, outcome, start = random_export(7)
    before = values.copy()
    for name in TRANSFORMS:
        rewards = apply_transform(RewardTransformConfig(transform=name), values, offsets, outcome, start)
        assert rewards.shape == values.shape and np.isfinite(rewards).all(), name
    assert (values == before).all()


def test_clip_delta_is_delta_of_the_clipped_rewards():
    values, offsets, outcome, start = random_export(3)
    config = RewardTransformConfig(transform="clip_delta", clip_threshold=0.3)
    expected = delta_rewards(clip_rewards(values, 0.3, 0.0), offsets)
    assert np.array_equal(apply_transform(config, values, offsets, outcome, start), expected)


def test_a_one_rollout_export_is_the_same_as_that_rollout_inside_a_larger_one():
    values, offsets, outcome, start = random_export(11)
    for name, (i, (a, b)) in itertools.product(TRANSFORMS, enumerate(zip(offsets[:-1], offsets[1:]))):
        config = RewardTransformConfig(transform=name)
        whole = apply_transform(config, values, offsets, outcome, start)[a:b]
        alone = apply_transform(config, values[a:b], np.array([0, b - a]), outcome[i:i + 1], start[i:i + 1])
        assert np.allclose(whole, alone), name


# ------------------------------------------------------------------ the rl_rewards export
@pytest.fixture(scope="module")
def sim_rows(tmp_path_factory):
    """The stepwise rows of a real sim run (tests/sim_warehouse.py), with its step texts in several styles."""
    from sim_warehouse import build_sim_warehouse

    from prm_data.export import ExportConfig, _query, resolve_policy

    wh = build_sim_warehouse(tmp_path_factory.mktemp("rl"), problems=10, rollouts=4)
    return wh, _query(wh, "stepwise", resolve_policy(wh, ExportConfig()))


@pytest.fixture(scope="module")
def tiny_tokenizer(sim_rows, tmp_path_factory):
    from prm_data.train.tiny import train_tokenizer

    _, rows = sim_rows
    texts = rows["prompt"].to_pylist() + [s for steps in rows["completions"].to_pylist() for s in steps]
    path = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts, 300).save_pretrained(str(path))
    return str(path)


def check_offsets_against(tokenizer, table):
    """Each step ends at its character offset, and its token index holds the step's last character."""
    steps_checked = 0
    for row in table.to_pylist():
        response = row["response"]
        enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
        spans = enc["offset_mapping"]
        start = 0
        for step, end, token in zip(row["steps"], row["step_end_char"], row["step_end_token"]):
            assert response[end - len(step):end] == step and end - len(step) >= start
            start = end
            token_start, token_end = spans[token]
            assert token_start <= end - 1 < token_end or (token_start < end <= token_end)
            assert token == len(spans) - 1 or spans[token + 1][0] >= end  # the next token starts after the step
            steps_checked += 1
        assert tokenizer.decode(enc["input_ids"]) == response
    assert steps_checked > 20


@pytest.mark.slow
def test_rl_rows_place_each_step_end_at_its_character_and_token_for_a_local_bpe_tokenizer(sim_rows, tiny_tokenizer):
    from prm_data.exports.rl_rows import build_rl_rows
    from prm_data.exports.step_offsets import load_tokenizer

    _, rows = sim_rows
    table, card = build_rl_rows(rows, RewardTransformConfig(transform="raw"), "\n\n", tiny_tokenizer)
    assert card["tokenizer"] == tiny_tokenizer and table.num_rows == rows.num_rows
    check_offsets_against(load_tokenizer(tiny_tokenizer), table)


@pytest.mark.slow
def test_rl_rows_token_offsets_hold_for_the_bundled_smollm2_tokenizer(sim_rows):
    from prm_data.exports.rl_rows import build_rl_rows
    from prm_data.exports.step_offsets import load_tokenizer
    from prm_data.llm.local_backend import bundled_gguf

    _, rows = sim_rows
    gguf = str(bundled_gguf())
    table, _ = build_rl_rows(rows, RewardTransformConfig(), "\n", gguf)
    check_offsets_against(load_tokenizer(gguf), table)


@pytest.mark.slow
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_the_export_writes_the_chosen_transforms_rewards_of_each_rollouts_values(sim_rows, transform):
    from prm_data.exports.rl_rows import build_rl_rows

    _, rows = sim_rows
    config = RewardTransformConfig(transform=transform, gamma=0.9)
    table, card = build_rl_rows(rows, config, "\n\n", None)
    assert card["transform"]["transform"] == transform and card["transform"]["gamma"] == 0.9
    assert table["step_end_token"].null_count == table.num_rows  # no tokenizer named
    outcome = [1.0 if ok else 0.0 for ok in rows["is_correct"].to_pylist()]
    by_problem = {}
    for pid, r in zip(rows["problem_id"].to_pylist(), outcome):
        by_problem.setdefault(pid, []).append(r)
    for i, row in enumerate(table.to_pylist()):
        values = np.array(row["step_values"])
        start = np.array([np.mean(by_problem[row["problem_id"]])])  # V(s_0): the problem's pass rate
        alone = apply_transform(config, values, np.array([0, len(values)]), np.array([outcome[i]]), start)
        assert row["outcome_reward"] == outcome[i]
        assert np.allclose(row["step_rewards"], alone)


def test_a_rollout_with_an_unknown_outcome_is_left_out_of_the_rl_rows_and_counted():
    import pyarrow as pa

    from prm_data.exports.rl_rows import build_rl_rows

    rows = pa.table({"problem_id": ["p", "p", "q"], "rollout_id": ["a", "b", "c"], "prompt": ["x", "x", "y"],
                     "completions": [["s1", "s2"], ["t1"], ["u1"]], "labels": [[True, False], [True], [False]],
                     "values": [[0.9, 0.1], [1.0], [0.0]], "is_correct": [True, None, False],
                     "policy_model": ["m", "m", "m"]})
    table, card = build_rl_rows(rows, RewardTransformConfig(transform="gated", gate=1.0), "\n", None)
    assert table["rollout_id"].to_pylist() == ["a", "c"]
    assert card["left_out"] == {"outcome_unknown": 1}
    assert table["step_rewards"].to_pylist() == [[0.9, 0.1], [0.0]]
    assert table["step_end_char"].to_pylist() == [[2, 5], [2]]
    assert table["response"].to_pylist() == ["s1\ns2", "u1"]
