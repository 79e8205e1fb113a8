"""The local backend's top-p sampler draws from exactly the nucleus a sort of the whole vocabulary gives.

Specifications:
- the nucleus found among the top-ranked candidates (widened until their mass exceeds top_p) holds
  the same tokens with the same probabilities as the one cut from a full sort, for peaked and
  for flat distributions over Qwen2.5's vocabulary size (a flat one needs thousands of tokens);
- sampling from it draws only nucleus tokens, about as often as their renormalized probability.
"""

from __future__ import annotations

import pytest
import torch

from prm_data.llm.local_backend import NUCLEUS_CANDIDATES, nucleus

VOCAB = 151_936


def sorted_nucleus(probs: torch.Tensor, top_p: float) -> dict[int, float]:
    """The reference: sort every token, keep those whose preceding mass is at most top_p."""
    p, order = torch.sort(probs, descending=True)
    keep = ~(p.cumsum(-1) - p > top_p)
    return {int(t): float(q) for t, q in zip(order[keep], p[keep])}


def found(probs: torch.Tensor, top_p: float) -> dict[int, float]:
    top, order = nucleus(probs.clone(), top_p)
    return {int(t): float(q) for t, q in zip(order, top) if q > 0}


@pytest.mark.parametrize("scale", [8.0, 3.0, 1.0, 0.05])  # peaked ... nearly flat
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.99])
def test_the_nucleus_equals_the_one_a_full_sort_gives(scale, top_p):
    gen = torch.Generator().manual_seed(int(scale * 100 + top_p * 1000))
    probs = torch.softmax(torch.randn(VOCAB, generator=gen) * scale, dim=-1)
    want = sorted_nucleus(probs, top_p)
    assert found(probs, top_p) == want
    if scale == 0.05:
        assert len(want) > NUCLEUS_CANDIDATES * 8  # the candidates had to be widened twice


def test_sampling_draws_nucleus_tokens_at_their_renormalized_rates():
    probs = torch.zeros(VOCAB)
    probs[[7, 11, 13, 17]] = torch.tensor([0.5, 0.3, 0.15, 0.05])
    top, order = nucleus(probs.clone(), 0.9)  # 0.5 + 0.3 < 0.9: 13 is in, 17 is out
    gen = torch.Generator().manual_seed(0)
    draws = [int(order[torch.multinomial(top, 1, generator=gen)]) for _ in range(4000)]
    assert set(draws) == {7, 11, 13}
    assert draws.count(7) / 4000 == pytest.approx(0.5 / 0.95, abs=0.03)
    assert draws.count(13) / 4000 == pytest.approx(0.15 / 0.95, abs=0.03)
