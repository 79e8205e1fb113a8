"""Agreement statistics for votes: Fleiss' kappa and the majority-vote accuracy of independent judges."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb


def fleiss_kappa(rows: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa (Fleiss, 1971) of `rows`: per subject, the number of raters per category.

    Subjects may have different numbers of raters (judges abstain); subjects
    with fewer than two ratings carry no agreement information and are
    skipped. Returns None when kappa is undefined: no usable subject, or every
    rating in one category (chance agreement is then 1).
    """
    usable = [list(r) for r in rows if sum(r) >= 2]
    if not usable:
        return None
    total = sum(sum(r) for r in usable)
    k = max(len(r) for r in usable)
    shares = [sum(r[j] for r in usable if j < len(r)) / total for j in range(k)]
    p_e = sum(s * s for s in shares)
    if p_e >= 1.0 - 1e-12:
        return None
    p_bar = sum((sum(c * c for c in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in usable) / len(usable)
    return (p_bar - p_e) / (1.0 - p_e)


def majority_accuracy(p: float, judges: int) -> float:
    """Probability that a strict majority of `judges` independent voters, each right with
    probability `p`, is right (Condorcet); ties (even counts) count as half right."""
    out = 0.0
    for right in range(judges + 1):
        prob = comb(judges, right) * p ** right * (1 - p) ** (judges - right)
        if 2 * right > judges:
            out += prob
        elif 2 * right == judges:
            out += prob / 2
    return out
