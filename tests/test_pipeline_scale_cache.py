"""The request-cache part of `benchmarks/pipeline_scale.py` measures what it says: a cache that holds
the answers it was filled with, opened in a fresh process, whose lookups find the stored half of the
keys and miss the other half."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pipeline_scale  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_the_cache_benchmark_fills_the_store_and_finds_half_its_lookups(tmp_path):
    small, large = pipeline_scale.measure_cache(REPO, tmp_path, [300, 3000])
    with sqlite3.connect(tmp_path / "wh" / "llm_cache.sqlite") as con:
        assert con.execute("SELECT count(*) FROM answers").fetchone()[0] == 3000
    for measured, stored in ((small, 300), (large, 3000)):
        assert measured["answers"] == stored
        assert measured["hits"] == measured["lookups"] // 2  # every odd lookup asks for a stored key
        assert measured["open_ms"] > 0 and measured["store_mb"] > 0
