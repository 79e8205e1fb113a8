"""Export the warehouse's final labels as Hugging Face datasets: a local folder or the Hub.

Three formats, from the SQL in `warehouse/queries/`:

- `stepwise`: TRL's stepwise supervision (`prompt`, `completions`, `labels`), the
  format `PRMTrainer` reads (Lightman et al., 2023; Wang et al., 2024, Math-Shepherd),
  plus `values` (soft labels: TRL casts `labels` to int, so soft values need their
  own column) and `label_sources`;
- `pairs`: step preference pairs from sibling nodes of the prefix trees, for
  Step-DPO (Lai et al., 2024): `prompt` (question + shared prefix), `chosen`, `rejected`;
- `processbench`: a ProcessBench-style evaluation set (Zheng et al., 2024):
  `problem`, `steps`, `label` = index of the earliest wrong step or -1, its steps
  put in order with numpy (prm_data/exports/processbench.py).

Three more, built from the stepwise rows when asked for in `formats`
(prm_data/exports/formats.py): `rl_rewards` (transformed step rewards at step
ends), `openrlhf` (OpenRLHF train_prm's layout), `verifier_sft` (critiques).

Every format is split into train and test by problem (a salted hash of the
problem id, so a problem is never in both and the split is stable across runs
and formats). The Arrow `Features` of every format are declared once, here,
from the column types of `prm_data/schema.py`.

A local export is written to a temporary folder and swapped in whole, so a
reader never sees half an export: `<config>/<split>-00000-of-00001.parquet`
(the Hub layout), `arrow/<config>/` (`save_to_disk`'s layout), `README.md` (the
dataset card) and `export.json` (counts and provenance), by prm_data/export_files.py.
Pushing to the Hub (prm_data/export_hub.py) uses the token from `HF_TOKEN` or the
Hugging Face login; it is never printed, logged or put into an error message.
The config and result types live in prm_data/export_config.py (no `datasets`
import) and are re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from datasets import Dataset, DatasetDict, DatasetInfo, Features, List, Value
from datasets.table import InMemoryTable

from prm_data.export_config import (DEFAULT_FORMAT, DEFAULT_FORMATS, FORMATS, PROVENANCE_FILE,  # noqa: F401
                                    SPLITS, EmptyExport, ExportConfig, ExportResult, HubPushError, UnknownPolicy)
from prm_data.export_files import write_export  # noqa: F401 - part of this module's interface
from prm_data.export_hub import push_export  # noqa: F401 - part of this module's interface
from prm_data.exports import formats as trainer_formats
from prm_data.exports.processbench import build_processbench_rows
from prm_data.schema import TABLES
from prm_data.steps import join_steps
from prm_data.stepwise_rows import backfill_stepwise_rows
from prm_data.warehouse import Warehouse, load_query

log = logging.getLogger(__name__)


def _col(table: str, column: str):
    """The datasets feature of a warehouse column, from its pyarrow type in prm_data/schema.py."""
    field = TABLES[table].field(column)
    return Features.from_arrow_schema(pa.schema([field]))[column]


FEATURES: dict[str, Features] = {
    "stepwise": Features({
        "problem_id": _col("problems", "problem_id"),
        "rollout_id": _col("rollouts", "rollout_id"),
        "prompt": _col("problems", "question"),
        "completions": List(_col("steps", "text")),
        "labels": List(_col("final_labels", "label")),
        "values": List(_col("final_labels", "value")),
        "label_sources": List(_col("final_labels", "sources")),
        "is_correct": _col("rollouts", "is_correct"),
        "policy_model": _col("rollouts", "policy_model"),
        "tests_passed": _col("rollouts", "tests_passed"),
    }),
    "pairs": Features({
        "problem_id": _col("problems", "problem_id"),
        "node_id": _col("tree_nodes", "node_id"),
        "prompt": Value("string"),  # question + separator + shared prefix steps + separator
        "question": _col("problems", "question"),
        "prefix": List(_col("tree_nodes", "step_text")),
        "chosen": _col("tree_nodes", "step_text"),
        "rejected": _col("tree_nodes", "step_text"),
        "chosen_value": Value("float64"),  # mc_successes / mc_samples of the chosen child
        "rejected_value": Value("float64"),
        "margin": Value("float64"),
        "chosen_node_id": _col("tree_nodes", "node_id"),
        "rejected_node_id": _col("tree_nodes", "node_id"),
    }),
    "processbench": Features({
        "id": _col("rollouts", "rollout_id"),
        "problem_id": _col("problems", "problem_id"),
        "rollout_id": _col("rollouts", "rollout_id"),
        "generator": _col("rollouts", "policy_model"),
        "problem": _col("problems", "question"),
        "steps": List(_col("steps", "text")),
        "label": Value("int32"),  # earliest wrong step, -1 = all steps correct
        "final_answer_correct": _col("rollouts", "is_correct"),
    }),
}
FEATURES.update(trainer_formats.FEATURES)  # rl_rewards, openrlhf, verifier_sft (prm_data/exports/formats.py)


def policies_present(warehouse: Warehouse, run_id: str | None = None) -> list[dict]:
    """The policies with final labels (in `run_id`, or any run), newest run first: policy, kept_steps, runs."""
    return warehouse.rows(load_query("export_policies"), {"run_id": run_id})


def resolve_policy(warehouse: Warehouse, config: ExportConfig) -> ExportConfig:
    """`config` with its policy set: the one asked for if it has final labels, else the newest present.

    Raises `UnknownPolicy` (listing the policies present) when the policy asked
    for has no final labels, or when there are no final labels at all.
    """
    present = policies_present(warehouse, config.run_id)
    where = f" in run {config.run_id!r}" if config.run_id else ""
    if not present:
        raise UnknownPolicy(f"nothing to export: the warehouse has no final labels{where}; "
                            "run `prm-data run` first")
    names = [p["policy"] for p in present]
    if config.policy is None:
        return config.model_copy(update={"policy": names[0]})
    if config.policy not in names:
        listed = ", ".join(f"{p['policy']} ({p['kept_steps']} kept steps)" for p in present)
        raise UnknownPolicy(f"no final labels under policy {config.policy!r}{where}; policies present: "
                            f"{listed}. Pass one with --policy, or leave --policy out for {names[0]!r}")
    return config


def split_of(problem_id: str, test_fraction: float, salt: str = "prm-data-split-v1") -> str:
    """`test` or `train` for a problem, from a salted sha256 of its id (stable, order-free)."""
    h = int.from_bytes(hashlib.sha256(f"{salt}\x1f{problem_id}".encode()).digest()[:8], "big")
    return "test" if h / 2**64 < test_fraction else "train"


def _query(warehouse: Warehouse, fmt: str, config: ExportConfig, stepwise: tuple[pa.Table, pa.ChunkedArray] | None = None
           ) -> pa.Table:
    """One format's rows as an Arrow table with the columns of `FEATURES[fmt]`, in the query's order.

    `stepwise`: the export's stepwise rows and the run of each (`_stepwise_rows`), from which
    `processbench` takes the rollouts they cover instead of gathering their steps again."""
    if fmt == "processbench":
        table = build_processbench_rows(warehouse, config.policy, config.run_id, *(stepwise or ()))
    elif fmt != "pairs":
        table = warehouse.query(load_query(f"export_{fmt}"), {"policy": config.policy, "run_id": config.run_id})
    else:
        table = warehouse.query(load_query("export_pairs"), {
            "margin": config.pair_margin, "min_samples": config.pair_min_samples,
            "max_pairs_per_node": config.max_pairs_per_node})
        prompts = [join_steps([q, *prefix], config.step_policy, trailing=True)
                   for q, prefix in zip(table["question"].to_pylist(), table["prefix"].to_pylist())]
        table = table.append_column("prompt", pa.array(prompts, pa.string()))
    return table.select(list(FEATURES[fmt])).cast(FEATURES[fmt].arrow_schema)


def _stepwise_rows(warehouse: Warehouse, config: ExportConfig) -> tuple[pa.Table, pa.ChunkedArray]:
    """The stepwise rows (the columns of `FEATURES["stepwise"]`) and the run each comes from."""
    table = warehouse.query(load_query("export_stepwise"), {"policy": config.policy, "run_id": config.run_id})
    return table.select(list(FEATURES["stepwise"])).cast(FEATURES["stepwise"].arrow_schema), table["run_id"]


def _split_masks(problem_ids: pa.ChunkedArray, config: ExportConfig,
                 in_test: dict[str, bool] | None = None) -> dict[str, pa.ChunkedArray]:
    """Row masks of each split: every problem id is hashed once (`split_of`), then matched vectorized.
    `in_test` remembers each problem's split across calls (the formats of one export share most problems)."""
    known = {} if in_test is None else in_test
    problems = pc.unique(problem_ids).to_pylist()
    for pid in problems:
        if pid not in known:
            known[pid] = split_of(pid, config.test_fraction, config.split_salt) == "test"
    test = [pid for pid in problems if known[pid]]
    in_test = pc.is_in(problem_ids, value_set=pa.array(test, pa.string()))
    return {"train": pc.invert(in_test), "test": in_test}


def _identity(column: pa.ChunkedArray) -> tuple:
    """Which memory a column's values are in: equal for the same data seen through two tables."""
    return (str(column.type), len(column), *((c.offset, len(c), *((b.address, b.size) for b in c.buffers()
                                                               if b is not None)) for c in column.chunks))


class _Splitter:
    """Splits the formats' tables by problem; a column several formats share is filtered once.

    The trainer formats are built from the stepwise rows and keep most of its columns as
    they are (the same ids, prompts, steps, values in the same memory): those are filtered
    once for all of them, by the mask of the same problem_id column. Every cached column
    is held with its source, so no memory it was keyed by can be reused while it is cached.
    """

    def __init__(self, config: ExportConfig):
        self.config = config
        self.masks: dict[tuple, tuple[pa.ChunkedArray, dict]] = {}
        self.columns: dict[tuple, tuple[pa.ChunkedArray, pa.ChunkedArray]] = {}
        self.in_test: dict[str, bool] = {}  # problem id -> in the test split, hashed once per export

    def split(self, table: pa.Table) -> dict[str, pa.Table]:
        key = _identity(table["problem_id"])
        if key not in self.masks:
            self.masks[key] = (table["problem_id"], _split_masks(table["problem_id"], self.config, self.in_test))
        out = {}
        for split, mask in self.masks[key][1].items():
            columns = []
            for column in table.columns:
                ck = (key, split, _identity(column))
                if ck not in self.columns:
                    self.columns[ck] = (column, column.filter(mask))
                columns.append(self.columns[ck][1])
            out[split] = pa.Table.from_arrays(columns, schema=table.schema)
        return out

    def in_split_order(self, table: pa.Table) -> pa.Table:
        """`table`'s train rows, then its test rows, each in their order, from the columns `split` cached.

        The trainer formats are built from these (row for row from the stepwise rows, in their order), so
        their rows come out train first and `cut` splits them with two slices instead of copying every
        text again: 1.2-1.5 s of CPU at 10M step labels (verifier_sft's messages alone are 420 MB)."""
        parts = self.split(table)
        return pa.Table.from_arrays([pa.chunked_array(parts["train"][name].chunks + parts["test"][name].chunks,
                                                      field.type) for name, field in zip(table.column_names,
                                                                                         table.schema)],
                                    schema=table.schema)

    def cut(self, table: pa.Table) -> dict[str, pa.Table]:
        """`split`, for a table whose train rows all come before its test rows: two slices, no copy."""
        test = np.asarray(_split_masks(table["problem_id"], self.config, self.in_test)["test"]
                          .to_numpy(zero_copy_only=False), bool)
        first_test = int(np.argmax(test)) if test.any() else len(test)
        if not test[first_test:].all():
            return self.split(table)
        return {"train": table.slice(0, first_test), "test": table.slice(first_test)}


def _fingerprint(table: pa.Table) -> str:
    """A content hash of an Arrow table (schema and every buffer), for `Dataset(fingerprint=)`.

    datasets would otherwise pickle the whole table to fingerprint it: 2.4 s of a
    4.4 s export of 666k rollouts, against a few milliseconds for this.
    """
    h = xxhash.xxh3_128(table.schema.to_string().encode())
    for column in table.columns:
        for chunk in column.chunks:
            h.update(f"{chunk.offset},{len(chunk)};".encode())  # slices of the same memory (a cut split) differ
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(memoryview(buf))
    return h.hexdigest()


def build_export(warehouse: Warehouse, config: ExportConfig | None = None, trainer_cards: dict | None = None,
                 on_built: Callable[[str, DatasetDict], None] | None = None) -> dict[str, DatasetDict]:
    """The export as one `DatasetDict` per format, with only non-empty splits.

    `load_dataset` refuses a declared split with no rows, so empty splits (and
    formats with no rows at all) are left out; the card still reports them as 0.
    Rows stay Arrow from the query to the dataset (no Python objects per row).
    The trainer formats are built from the stepwise rows (queried once); their
    card sections go into `trainer_cards` when given. `on_built(format, datasets)` is called as
    soon as each format is built (run_export queues its files there while the next one is built).
    """
    config = config or ExportConfig()
    if config.policy is None:
        config = resolve_policy(warehouse, config)
    needs_stepwise = {"stepwise", *trainer_formats.FORMATS} & set(config.formats)  # processbench uses it if there
    if needs_stepwise and (backfilled := backfill_stepwise_rows(warehouse, config.run_id)):
        log.info("built the stepwise rows of %d final-label shard(s) that had none", len(backfilled))
    stepwise, stepwise_runs = _stepwise_rows(warehouse, config) if needs_stepwise else (None, None)
    out: dict[str, DatasetDict] = {}
    splitter = _Splitter(config)
    in_split_order = None  # the stepwise rows, train then test: what the trainer formats are built from
    for fmt in config.formats:
        if fmt in trainer_formats.FORMATS:
            if in_split_order is None:
                in_split_order = splitter.in_split_order(stepwise)
            built = trainer_formats.build_trainer_format(fmt, warehouse, in_split_order, config.trainers,
                                                         config.step_policy)
            table = built.table
            if trainer_cards is not None:
                trainer_cards[fmt] = built.card
            splits = splitter.cut(table)
        else:
            table = stepwise if fmt == "stepwise" else _query(
                warehouse, fmt, config, (stepwise, stepwise_runs) if stepwise is not None else None)
            splits = splitter.split(table)
        out[fmt] = DatasetDict({
            split: Dataset(InMemoryTable(rows), info=DatasetInfo(features=FEATURES[fmt]),
                           fingerprint=_fingerprint(rows))
            for split, rows in splits.items() if rows.num_rows
        })
        if on_built is not None:
            on_built(fmt, out[fmt])
    return out


def counts_of(datasets: dict[str, DatasetDict]) -> dict[str, dict[str, int]]:
    return {fmt: {s: (d[s].num_rows if s in d else 0) for s in SPLITS} for fmt, d in datasets.items()}


def is_local_path(path: str | os.PathLike) -> bool:
    """True when `path` can only mean a folder here (it exists, is absolute or relative with ./ ../ ~, has
    more than one `/`, or its first part is a folder here, like `exports/v1`); a Hub repo id is `owner/name`."""
    text = str(path)
    if Path(text).exists() or text.startswith(("/", "./", "../", "~", ".\\")) or text.count("/") != 1:
        return True
    return Path(text.split("/", 1)[0]).is_dir()


def load_export(path: str | os.PathLike, fmt: str = DEFAULT_FORMAT) -> DatasetDict:
    """One format of an export: from a local export folder (its `arrow/` copy) or a Hub repo id."""
    from datasets import load_dataset, load_from_disk

    p = Path(path)
    if (p / "arrow" / fmt).exists():
        return load_from_disk(str(p / "arrow" / fmt))
    if (p / "dataset_dict.json").exists():  # a save_to_disk folder given directly
        return load_from_disk(str(p))
    if p.exists():
        raise FileNotFoundError(f"{p} holds no {fmt!r} export (expected {p / 'arrow' / fmt})")
    if is_local_path(path):
        raise FileNotFoundError(f"{path}: no such export folder (write one with `prm-data export --out {path}`)")
    try:
        return load_dataset(str(path), fmt)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, bad id: one line, not a Hub traceback
        raise FileNotFoundError(f"{path}: no such export folder, and no Hub dataset of that name could be "
                                f"loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
