"""An export of every config writes, for each config, the same files as that config exported alone.

The configs of one export share their inputs (the stepwise rows, queried once, feed the
trainer configs), so building them together must not change any of them: each
config's Parquet shards and save_to_disk copy are compared byte for byte, and its part
of export.json, on the hand-labelled fixture (tests/export_fixture.py).
"""

from __future__ import annotations

import json

import pytest
from export_fixture import build_fixture_warehouse

from prm_data.export import FORMATS, ExportConfig
from prm_data.export_run import run_export


@pytest.fixture(scope="module")
def every_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("every")
    wh = build_fixture_warehouse(root / "wh")
    config = ExportConfig(test_fraction=0.5, pair_min_samples=2)
    every = run_export(wh, root / "every", config.model_copy(update={"formats": FORMATS})).path
    return wh, root, config, every


def _config_files(export, fmt: str) -> dict[str, bytes]:
    """Every file of one config in an export folder: its Parquet shards and its save_to_disk copy."""
    return {str(p.relative_to(export)): p.read_bytes()
            for folder in (export / fmt, export / "arrow" / fmt) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_config_is_written_as_it_is_alone(every_config, fmt):
    wh, root, config, every = every_config
    alone = run_export(wh, root / f"alone-{fmt}", config.model_copy(update={"formats": (fmt,)})).path
    expected = _config_files(alone, fmt)
    assert any(name.endswith(".parquet") for name in expected), f"{fmt} has no rows in the fixture"
    assert _config_files(every, fmt) == expected
    every_manifest, alone_manifest = (json.loads((e / "export.json").read_text()) for e in (every, alone))
    assert every_manifest["counts"][fmt] == alone_manifest["counts"][fmt]
    for section in ("label_balance", "trainer_formats"):  # the card's own part about this config
        assert every_manifest.get(section, {}).get(fmt) == alone_manifest.get(section, {}).get(fmt)
