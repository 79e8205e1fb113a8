"""The export's files, written with pyarrow, are the files `datasets` itself writes.

prm_data/export_files.py writes each config's save_to_disk copy and Parquet shards
without going through `Dataset.save_to_disk` / `Dataset.to_parquet` (their Python per
1000-row batch cost more than the writing). These tests write every config of the
hand-labelled fixture (tests/export_fixture.py) both ways and compare the files byte
for byte, with the size limits shrunk (in datasets and here alike) so that the
fixture's few rows still make several shards, batches and row groups; and they read
the folder back with `load_from_disk` and `load_dataset`.
"""

from __future__ import annotations

import datasets
import pytest
from datasets import load_dataset, load_from_disk
from export_fixture import build_fixture_warehouse

from prm_data import export_files
from prm_data.export import FORMATS, ExportConfig, build_export


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    wh = build_fixture_warehouse(root / "wh")
    return root, build_export(wh, ExportConfig(test_fraction=0.5, pair_min_samples=2, formats=FORMATS))


@pytest.fixture
def small_limits(monkeypatch):
    """Shards of 500 bytes, batches of 2 rows and row groups of 2 kB, in datasets and in export_files alike."""
    monkeypatch.setattr(datasets.config, "DEFAULT_MAX_BATCH_SIZE", 2)
    monkeypatch.setattr(datasets.config, "MAX_ROW_GROUP_SIZE", "2KB")
    monkeypatch.setattr(export_files, "MAX_BATCH_ROWS", 2)
    monkeypatch.setattr(export_files, "MAX_ROW_GROUP_BYTES", 2000)
    monkeypatch.setattr(export_files, "MAX_SHARD_BYTES", 500)


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_save_to_disk_copy_is_byte_for_byte_what_datasets_writes(built, tmp_path, small_limits, fmt):
    _, exports = built
    dsd = exports[fmt]
    assert dsd, f"{fmt} has no rows in the fixture"
    dsd.save_to_disk(str(tmp_path / "datasets"), max_shard_size=500)
    with export_files.ExportFolder(tmp_path / "ours") as folder:
        folder.add(fmt, dsd)
        folder.commit("card", {})
    theirs, ours = _files(tmp_path / "datasets"), _files(tmp_path / "ours" / "arrow" / fmt)
    if any(ds.num_rows > 1 for ds in dsd.values()):  # a split of one row is one shard
        assert any(name.endswith(".arrow") and "-of-00001" not in name for name in theirs), "several shards expected"
    assert ours.keys() == theirs.keys()
    assert ours == theirs
    loaded = load_from_disk(str(tmp_path / "ours" / "arrow" / fmt))
    for split, ds in dsd.items():
        assert loaded[split].features == ds.features
        assert loaded[split].data.table.equals(ds.data.table)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_parquet_shards_are_what_to_parquet_writes_without_content_defined_chunking(built, tmp_path,
                                                                                      small_limits, fmt):
    _, exports = built
    for split, ds in exports[fmt].items():
        ds.to_parquet(str(tmp_path / f"theirs-{split}.parquet"), use_content_defined_chunking=False)
        export_files.write_parquet(ds.data.table, ds.features, tmp_path / f"ours-{split}.parquet")
        theirs, ours = ((tmp_path / f"{who}-{split}.parquet").read_bytes() for who in ("theirs", "ours"))
        assert ours == theirs


def test_load_dataset_reads_every_config_of_the_folder(built, tmp_path):
    _, exports = built
    out = export_files.write_export(exports, tmp_path / "export", "card", {"counts": {}})
    for fmt, dsd in exports.items():
        loaded = load_dataset(str(out), data_files={s: f"{fmt}/{s}-*.parquet" for s in dsd})
        for split, ds in dsd.items():
            assert loaded[split].features == ds.features
            assert loaded[split].data.table.equals(ds.data.table.replace_schema_metadata(
                loaded[split].data.table.schema.metadata))


def test_writer_threads_write_the_same_files_as_writing_serially(built, tmp_path):
    _, exports = built
    serial = export_files.write_export(exports, tmp_path / "serial", "card", {"counts": {}})
    threaded = export_files.write_export(exports, tmp_path / "threaded", "card", {"counts": {}}, writers=2)
    assert _files(threaded) == _files(serial)


@pytest.mark.parametrize("writers", [0, 2])
def test_a_failed_write_leaves_the_earlier_export_as_it_was(built, tmp_path, monkeypatch, writers):
    _, exports = built
    out = export_files.write_export(exports, tmp_path / "export", "card", {"counts": {}})
    before = _files(out)

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export_files, "write_arrow_split", broken)
    with pytest.raises(OSError, match="disk full"):
        export_files.write_export(exports, out, "another card", {"counts": {}}, writers=writers)
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder is left behind


def test_a_column_two_formats_share_is_split_once_and_empty_columns_keep_their_types():
    import pyarrow as pa

    from prm_data.export import _split_masks, _Splitter

    config = ExportConfig(test_fraction=0.5)
    ids = pa.chunked_array([[f"p{i % 7}" for i in range(40)], ["p1", "p9"]])
    stepwise = pa.table({"problem_id": ids, "text": pa.chunked_array([[str(i) for i in range(42)]])})
    derived = pa.table({"problem_id": ids, "steps": stepwise["text"], "reward": pa.array(range(42), pa.int64())})
    splitter = _Splitter(config)
    first, second = splitter.split(stepwise), splitter.split(derived)
    masks = _split_masks(ids, config)
    assert set(first) == {"train", "test"} and first["test"].num_rows and first["train"].num_rows
    for split, mask in masks.items():
        assert first[split].equals(stepwise.filter(mask)) and second[split].equals(derived.filter(mask))
        shared = [c.buffers()[2].address for c in (first[split]["text"].chunks[0], second[split]["steps"].chunks[0])]
        assert shared[0] == shared[1]  # the same filtered memory, not a second copy
    empty = {t: pa.table({"problem_id": pa.chunked_array([], pa.string()), "v": pa.chunked_array([], t)})
             for t in (pa.string(), pa.float64(), pa.list_(pa.string()))}
    for t, table in empty.items():
        assert splitter.split(table)["train"].schema.field("v").type == t
