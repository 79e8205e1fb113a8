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
(the Hub layout), `arrow/<config>/` (`save_to_disk`), `README.md` (the dataset
card) and `export.json` (counts and provenance). Pushing to the Hub uses the
token from `HF_TOKEN` or the Hugging Face login; it is never printed, logged or
put into an error message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from datasets import Dataset, DatasetDict, DatasetInfo, Features, List, Value
from datasets.table import InMemoryTable
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prm_data.exports import formats as trainer_formats
from prm_data.exports.processbench import build_processbench_rows
from prm_data.schema import TABLES
from prm_data.steps import POLICIES, join_steps
from prm_data.stepwise_rows import backfill_stepwise_rows
from prm_data.warehouse import Warehouse, load_query

log = logging.getLogger(__name__)

DEFAULT_FORMATS = ("stepwise", "pairs", "processbench")
FORMATS = (*DEFAULT_FORMATS, *trainer_formats.FORMATS)  # the trainer formats are built when asked for
PROVENANCE_FILE = "export.json"  # beside the card: export config, runs with their configs, counts, costs
SPLITS = ("train", "test")
DEFAULT_FORMAT = "stepwise"


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


class ExportConfig(BaseModel):
    """What to export and how to split it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str | None = Field(None, description="Which `final_labels.policy` to export (consensus, hybrid, "
                               "mc_only, judge_only, ...); None = the policy of the newest run that wrote "
                               "final labels. A policy with no final labels is refused, naming those present.")
    run_id: str | None = Field(None, description="Export only final labels from this run; None = every run "
                               "(the greatest run_id wins where runs overlap).")
    formats: tuple[str, ...] = Field(DEFAULT_FORMATS, description="Which formats to build: stepwise, pairs, "
                                     "processbench (the default), rl_rewards, openrlhf, verifier_sft.")
    test_fraction: float = Field(0.1, ge=0.0, le=1.0, description="Share of problems in the test split.")
    split_salt: str = Field("prm-data-split-v1", description="Salt of the problem-id hash that decides the "
                            "split; change it to draw a different split.")
    pair_margin: float = Field(0.5, gt=0.0, le=1.0, description="Minimum MC-value gap between the chosen and "
                               "the rejected sibling step (Step-DPO keeps clearly better steps only).")
    pair_min_samples: int = Field(4, ge=1, description="Minimum rollouts through each sibling for its MC "
                                  "value to count (Math-Shepherd uses N=8 completions per step).")
    max_pairs_per_node: int = Field(4, ge=1, description="At most this many pairs per parent node, widest "
                                    "margin first, so bushy nodes do not dominate.")
    step_policy: str = Field("blank_line", description="Step separator policy used to write a pair's shared "
                             "prefix into its prompt (see prm_data/steps.py).")
    license: str = Field("unknown", description="License id of the dataset card (a Hub license id, e.g. "
                         "apache-2.0, cc-by-4.0; `unknown` until you set it: the policy model's terms may "
                         "bind what it wrote).")
    language: tuple[str, ...] = Field(("en",), description="Languages of the problems and steps (card metadata).")
    task_categories: tuple[str, ...] = Field(("token-classification", "text-generation"), description=(
        "Hub task categories of the card: a PRM is a token classifier over step separators; the pairs "
        "serve preference tuning of a generator."))
    pretty_name: str = Field("prm-data process supervision", description="Title of the dataset card.")
    trainers: trainer_formats.TrainerExportOptions = Field(
        default_factory=trainer_formats.TrainerExportOptions,
        description="Options of the rl_rewards, openrlhf and verifier_sft formats (prm_data/exports/formats.py).")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(FORMATS))
        if unknown or not v:
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}; unknown: {unknown}")
        return tuple(f for f in FORMATS if f in v)

    @field_validator("step_policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"step_policy must be one of {POLICIES}")
        return v


@dataclass(frozen=True)
class ExportResult:
    path: Path | None  # local folder, when written
    repo_id: str | None  # Hub repo, when pushed
    counts: dict[str, dict[str, int]]  # format -> split -> rows
    policy: str | None = None  # the final_labels.policy exported


class HubPushError(RuntimeError):
    """Pushing to the Hub failed; the message never contains the token."""


class EmptyExport(ValueError):
    """No format has a single row: nothing is written or pushed."""


class UnknownPolicy(EmptyExport):
    """The policy asked for has no final labels (a typo, or another config's policy): nothing is written."""


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


def _query(warehouse: Warehouse, fmt: str, config: ExportConfig) -> pa.Table:
    """One format's rows as an Arrow table with the columns of `FEATURES[fmt]`, in the query's order."""
    if fmt == "processbench":
        table = build_processbench_rows(warehouse, config.policy, config.run_id)
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


def _split_masks(problem_ids: pa.ChunkedArray, config: ExportConfig) -> dict[str, pa.ChunkedArray]:
    """Row masks of each split: every problem id is hashed once (`split_of`), then matched vectorized."""
    test = [pid for pid in pc.unique(problem_ids).to_pylist()
            if split_of(pid, config.test_fraction, config.split_salt) == "test"]
    in_test = pc.is_in(problem_ids, value_set=pa.array(test, pa.string()))
    return {"train": pc.invert(in_test), "test": in_test}


def _fingerprint(table: pa.Table) -> str:
    """A content hash of an Arrow table (schema and every buffer), for `Dataset(fingerprint=)`.

    datasets would otherwise pickle the whole table to fingerprint it: 2.4 s of a
    4.4 s export of 666k rollouts, against a few milliseconds for this.
    """
    h = xxhash.xxh3_128(table.schema.to_string().encode())
    for column in table.columns:
        for chunk in column.chunks:
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(memoryview(buf))
    return h.hexdigest()


def build_export(warehouse: Warehouse, config: ExportConfig | None = None,
                 trainer_cards: dict | None = None) -> dict[str, DatasetDict]:
    """The export as one `DatasetDict` per format, with only non-empty splits.

    `load_dataset` refuses a declared split with no rows, so empty splits (and
    formats with no rows at all) are left out; the card still reports them as 0.
    Rows stay Arrow from the query to the dataset (no Python objects per row).
    The trainer formats are built from the stepwise rows (queried once); their
    card sections go into `trainer_cards` when given.
    """
    config = config or ExportConfig()
    if config.policy is None:
        config = resolve_policy(warehouse, config)
    needs_stepwise = {"stepwise", *trainer_formats.FORMATS} & set(config.formats)
    if needs_stepwise and (backfilled := backfill_stepwise_rows(warehouse, config.run_id)):
        log.info("built the stepwise rows of %d final-label shard(s) that had none", len(backfilled))
    stepwise = _query(warehouse, "stepwise", config) if needs_stepwise else None
    out: dict[str, DatasetDict] = {}
    for fmt in config.formats:
        if fmt in trainer_formats.FORMATS:
            built = trainer_formats.build_trainer_format(fmt, warehouse, stepwise, config.trainers,
                                                         config.step_policy)
            table = built.table
            if trainer_cards is not None:
                trainer_cards[fmt] = built.card
        else:
            table = stepwise if fmt == "stepwise" else _query(warehouse, fmt, config)
        splits = {split: table.filter(mask) for split, mask in _split_masks(table["problem_id"], config).items()}
        out[fmt] = DatasetDict({
            split: Dataset(InMemoryTable(rows), info=DatasetInfo(features=FEATURES[fmt]),
                           fingerprint=_fingerprint(rows))
            for split, rows in splits.items() if rows.num_rows
        })
    return out


def counts_of(datasets: dict[str, DatasetDict]) -> dict[str, dict[str, int]]:
    return {fmt: {s: (d[s].num_rows if s in d else 0) for s in SPLITS} for fmt, d in datasets.items()}


def write_export(datasets: dict[str, DatasetDict], out_dir: str | os.PathLike, card: str,
                 manifest: dict) -> Path:
    """Write the export folder (Parquet in the Hub layout, save_to_disk copies, card, manifest).

    Everything is written into a fresh sibling folder which then replaces
    `out_dir` whole, so no stale shard of an earlier export survives. A
    non-empty `out_dir` that is not an earlier export is refused, not replaced.
    """
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()) and not (out / "export.json").exists():
        raise FileExistsError(f"refusing to replace {out}: it is not empty and holds no earlier export "
                              "(export.json); choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        for fmt, dsd in datasets.items():
            for split, ds in dsd.items():
                (tmp / fmt).mkdir(exist_ok=True)
                ds.to_parquet(str(tmp / fmt / f"{split}-00000-of-00001.parquet"))
            if dsd:
                dsd.save_to_disk(str(tmp / "arrow" / fmt))
        (tmp / "README.md").write_text(card)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


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


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return text


def push_export(export_dir: str | os.PathLike, repo_id: str, private: bool = False,
                max_shard_size: str | int | None = None) -> str:
    """Push a written export folder to the Hub as a dataset repo; returns the repo id.

    The card is committed first; then every format is pushed as its own config
    with `datasets.push_to_hub`, which adds the `dataset_info` / `configs`
    metadata to the card and deletes shards a previous push left in that
    config's folder. Folders of formats that have no rows any more are deleted.
    The token comes from `HF_TOKEN` or the Hugging Face login; any error is
    re-raised as `HubPushError` with the token removed from the message.
    """
    from datasets import load_from_disk
    from huggingface_hub import HfApi, get_token

    root = Path(export_dir)
    secret = get_token()  # read only to scrub it from error messages
    try:
        api = HfApi()
        # private=None leaves a new repo to the namespace's default visibility
        api.create_repo(repo_id, repo_type="dataset", private=private or None, exist_ok=True)
        api.upload_file(path_or_fileobj=str(root / "README.md"), path_in_repo="README.md", repo_id=repo_id,
                        repo_type="dataset", commit_message="Update the dataset card")
        api.upload_file(path_or_fileobj=str(root / PROVENANCE_FILE), path_in_repo=PROVENANCE_FILE,
                        repo_id=repo_id, repo_type="dataset", commit_message="Update the export's provenance")
        pushed = []
        for fmt in FORMATS:
            if not (root / "arrow" / fmt).exists():
                continue
            dsd = load_from_disk(str(root / "arrow" / fmt))
            dsd.push_to_hub(repo_id, config_name=fmt, set_default=fmt == DEFAULT_FORMAT, private=private or None,
                            max_shard_size=max_shard_size, commit_message=f"Upload the {fmt} export")
            pushed.append(fmt)
        present = {f.split("/", 1)[0] for f in api.list_repo_files(repo_id, repo_type="dataset")}
        for fmt in sorted(set(FORMATS) - set(pushed) & present):
            api.delete_folder(fmt, repo_id=repo_id, repo_type="dataset",
                              commit_message=f"Remove the {fmt} export: it has no rows now")
    except Exception as exc:  # noqa: BLE001 - re-raised below, scrubbed of the token
        message = _scrub(f"pushing to {repo_id} failed: {type(exc).__name__}: {exc}", secret)
        raise HubPushError(message) from None
    log.info("pushed %s to the Hub dataset %s", ", ".join(pushed) or "nothing", repo_id)
    return repo_id
