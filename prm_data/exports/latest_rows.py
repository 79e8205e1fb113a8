"""The export's latest-row rule on flat rows, with numpy: where several runs wrote a key, the greatest run_id wins.

SQL picks the latest row per key with a GROUP BY (or a window) over every row, which
at 10M step labels cost more than the rest of a config's build; the rows of a config
come back flat instead, with their run ids, and `latest_per_key` keeps one per key.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def run_rank(runs: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per row, the rank of its run id among those present (a greater run id ranks higher); -1 for null."""
    encoded = pc.dictionary_encode(runs)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.array([], encoded.type)
    names = np.asarray(encoded.dictionary.to_pylist(), object)
    rank_of = np.empty(len(names), np.int64)
    rank_of[np.argsort(names, kind="stable")] = np.arange(len(names))
    indices = np.asarray(encoded.indices.fill_null(-1).to_numpy(), np.int64)
    return np.where(indices >= 0, rank_of[np.maximum(indices, 0)], -1)


def latest_per_key(key: np.ndarray, *runs: pa.ChunkedArray) -> np.ndarray:
    """Positions of one row per distinct `key` (int64), ordered by key: the row with the greatest run ids,
    compared in the order given (`runs[0]` first); ties between rows of the same runs keep the first."""
    order = np.argsort(key, kind="stable")
    if not len(order) or (np.diff(key[order]) != 0).all():
        return order  # every key written once: the common case
    order = np.lexsort((*(-run_rank(r) for r in reversed(runs)), key))
    return order[np.r_[True, np.diff(key[order]) != 0]]
