"""The export folder's files, written with pyarrow in the layouts `datasets` reads.

- `<config>/<split>-00000-of-00001.parquet`: what `Dataset.to_parquet` writes (the
  features' Arrow schema with its `huggingface` metadata, row groups of at most
  100 MB, page index, snappy and dictionary encoding per column) except content-
  defined chunking, which only lets the Hub deduplicate a re-upload of the same file:
  `push_export` never uploads these files (`datasets.push_to_hub` writes its own
  Parquet, with it), and without it the write costs about a fifth less CPU.
- `arrow/<config>/`: what `DatasetDict.save_to_disk` writes (`dataset_dict.json`; per
  split `data-0000i-of-0000N.arrow` shards of at most 500 MB in batches of at most
  1000 rows, `dataset_info.json`, `state.json`), so `load_from_disk` reads it. datasets
  spends about two thirds of its save_to_disk in Python per 1000-row batch (casting and
  checking each batch against the features); this writes the same batches with pyarrow
  alone (tests/test_export_files.py compares the files with datasets' own).

`ExportFolder` writes them into a fresh sibling folder, each config's as soon as it is
built, serially by default; with `writers` > 0, on that many threads while the next
config is built (pyarrow's writers release the GIL). At 10M step labels on 2 CPUs shared
with other jobs (load average 8.5-12), 2 writer threads cost 4-6 s more CPU than writing
inline (32.7-34.6 s against 28.3-29.1 s for every config) and did not reliably shorten
the wall time, so serial is the default. `commit` waits for every file, adds the card and
the manifest, and swaps the folder in whole.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prm_data.export_config import PROVENANCE_FILE

MAX_ROW_GROUP_BYTES = 100 << 20  # datasets.config.MAX_ROW_GROUP_SIZE ("100MB")
MAX_SHARD_BYTES = 500 << 20  # datasets.config.MAX_SHARD_SIZE ("500MB"), save_to_disk's shard size
MAX_BATCH_ROWS = 1000  # datasets.config.DEFAULT_MAX_BATCH_SIZE, save_to_disk's batches


def _rows_per(table: pa.Table, max_bytes: int) -> int:
    return max(1, table.num_rows * max_bytes // table.nbytes) if table.nbytes else table.num_rows or 1


def write_parquet(table: pa.Table, features, path: Path) -> None:
    """`table` as one Parquet file, as `Dataset.to_parquet` writes it, without content-defined chunking."""
    from datasets.arrow_writer import get_parquet_column_options

    schema = features.arrow_schema
    step = _rows_per(table, MAX_ROW_GROUP_BYTES)
    with pq.ParquetWriter(str(path), schema=schema, write_page_index=True,
                          **get_parquet_column_options(features, schema)) as writer:
        for offset in range(0, table.num_rows, step):
            writer.write_table(table.slice(offset, step))


def _info_dict(features) -> dict:
    from datasets import DatasetInfo
    from datasets.utils.py_utils import asdict

    return asdict(DatasetInfo(features=features))


def write_arrow_split(table: pa.Table, features, fingerprint: str, folder: Path) -> None:
    """One split as `Dataset.save_to_disk` writes it: Arrow IPC stream shards, dataset_info.json, state.json."""
    folder.mkdir()
    info = _info_dict(features)
    schema = pa.schema(features.type).with_metadata(
        {"huggingface": json.dumps({"info": {"features": info["features"]}})})
    shards = max(1, min(table.num_rows, int(table.nbytes / MAX_SHARD_BYTES) + 1))
    batch = min(MAX_BATCH_ROWS, _rows_per(table, MAX_ROW_GROUP_BYTES))
    names = [f"data-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
    div, mod = divmod(table.num_rows, shards)  # contiguous shards, as Dataset.shard(contiguous=True)
    start = 0
    for i, name in enumerate(names):
        shard = table.slice(start, div + (i < mod))
        start += shard.num_rows
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for offset in range(0, shard.num_rows, batch):
                writer.write_table(shard.slice(offset, batch).combine_chunks(), batch)
    state = {"_data_files": [{"filename": name} for name in names], "_fingerprint": fingerprint,
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (folder / "dataset_info.json").write_text(json.dumps({k: info[k] for k in sorted(info)}, indent=2))


class ExportFolder:
    """A fresh folder beside `out_dir` that replaces it whole on `commit`; removed on `abort` or an error.

    A non-empty `out_dir` that is not an earlier export (no export.json) is refused before anything
    is written. `add` writes a config's files, or with `writers` queues them on the writer threads.
    """

    def __init__(self, out_dir: str | os.PathLike, writers: int = 0):
        self.out = Path(out_dir).resolve()
        if self.out.exists() and any(self.out.iterdir()) and not (self.out / PROVENANCE_FILE).exists():
            raise FileExistsError(f"refusing to replace {self.out}: it is not empty and holds no earlier export "
                                  f"({PROVENANCE_FILE}); choose a new or empty folder")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out.with_name(f".{self.out.name}.{uuid.uuid4().hex}.tmp")
        self.tmp.mkdir()
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="export-writer") if writers else None
        self._jobs: list[Future] = []

    def _write(self, job, *args) -> None:
        if self._pool is None:
            job(*args)  # serial: an error surfaces here, and the with-block removes the folder
        else:
            self._jobs.append(self._pool.submit(job, *args))

    def add(self, fmt: str, dsd) -> None:
        """Write (or queue) the Parquet files and save_to_disk copy of one config (a DatasetDict of non-empty splits)."""
        if not dsd:
            return
        (self.tmp / fmt).mkdir()
        (self.tmp / "arrow" / fmt).mkdir(parents=True)
        (self.tmp / "arrow" / fmt / "dataset_dict.json").write_text(json.dumps({"splits": list(dsd)}))
        for split, ds in dsd.items():
            table, features = ds.data.table, ds.features
            self._write(write_parquet, table, features, self.tmp / fmt / f"{split}-00000-of-00001.parquet")
            self._write(write_arrow_split, table, features, ds._fingerprint, self.tmp / "arrow" / fmt / split)

    def commit(self, card: str, manifest: dict) -> Path:
        """Wait for every file, write the card and the manifest, and swap the folder in for `out_dir`."""
        try:
            for job in self._jobs:
                job.result()
            (self.tmp / "README.md").write_text(card)
            (self.tmp / PROVENANCE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str)
                                                    + "\n")
            old = self.out.with_name(f".{self.out.name}.{uuid.uuid4().hex}.old")
            if self.out.exists():
                self.out.rename(old)
            self.tmp.rename(self.out)
            if old.exists():
                shutil.rmtree(old)
        finally:
            self.abort()
        return self.out

    def abort(self) -> None:
        """Stop the writers and remove the unfinished folder (nothing of `out_dir` is touched)."""
        for job in self._jobs:
            job.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)

    def __enter__(self) -> ExportFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def write_export(datasets: dict, out_dir: str | os.PathLike, card: str, manifest: dict, writers: int = 0) -> Path:
    """Write the export folder (Parquet in the Hub layout, save_to_disk copies, card, manifest) and swap it in.

    Everything is written into a fresh sibling folder which then replaces
    `out_dir` whole, so no stale shard of an earlier export survives. A
    non-empty `out_dir` that is not an earlier export is refused, not replaced.
    """
    with ExportFolder(out_dir, writers) as folder:
        for fmt, dsd in datasets.items():
            folder.add(fmt, dsd)
        return folder.commit(card, manifest)
