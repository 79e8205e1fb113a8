"""Problem sources: files, Hugging Face datasets and the bundled bank, behind one spec string.

    load_problems("data/gsm8k.jsonl", FieldMapping(answer_format="gsm8k"), run_id, failures)
    load_problems("hf:openai/gsm8k:main", FieldMapping(answer_format="gsm8k", split="test"), ...)
    load_problems("bank:200:2-5:7", run_id=run_id, failures=failures)   # COUNT[:DIFFICULTY[:SEED[:OPS[:MAX]]]]
    load_problems("code_bank:50:3-5:7", run_id=run_id)                   # COUNT[:BLOCKS[:SEED]]
    ingest_problems(warehouse, rows, run_id)

Spec forms: `bank:COUNT[:DIFFICULTY[:SEED[:OPS[:MAX_OPERAND]]]]` (DIFFICULTY is
a number of operations or a range `LO-HI`, OPS the allowed operations);
`code_bank:COUNT[:BLOCKS[:SEED]]` (function-writing problems with unit tests,
prm_data/sources/code_bank.py; BLOCKS the number of logical blocks of the
reference body, or a range `LO-HI`); `hf:NAME[:CONFIG]` (Hub id or local dataset
directory); a path to a `.jsonl`/`.json`/`.csv`/`.tsv`/`.parquet` file (a
`jsonl:`, `csv:` or `parquet:` prefix forces the format); a directory is read
as a local Hugging Face dataset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prm_data.failures import FailureLog
from prm_data.sources.bank import generate_bank
from prm_data.sources.code_bank import difficulty_range, generate_code_bank
from prm_data.sources.files import SourceError, file_format, read_records
from prm_data.sources.validate import FieldMapping, RawRecord, RowValidator

__all__ = ["BankSpec", "CodeBankSpec", "FieldMapping", "IngestResult", "SourceError", "check_source",
           "ingest_problems", "load_problems", "parse_bank_spec", "parse_code_bank_spec"]

_BANK = re.compile(r"^(?P<count>\d+)(?::(?P<lo>\d+)(?:-(?P<hi>\d+))?(?::(?P<seed>-?\d+)"
                   r"(?::(?P<ops>[-+*/]+)(?::(?P<max>\d+))?)?)?)?$")


@dataclass(frozen=True)
class BankSpec:
    count: int
    difficulty: int | tuple[int, int]
    seed: int = 0
    ops: str = "+-*/"
    max_operand: int = 20


def parse_bank_spec(body: str) -> BankSpec:
    """`COUNT[:DIFFICULTY[:SEED[:OPS[:MAX_OPERAND]]]]`; defaults: 3 operations, seed 0, `+-*/`, operands <= 20.

    DIFFICULTY is a number of operations or a range `LO-HI`; OPS the allowed
    operations (e.g. `+-` for addition and subtraction only).
    """
    m = _BANK.match(body.strip())
    if not m or int(m["count"]) < 1:
        raise SourceError(f"bad bank spec {body!r}: expected bank:COUNT[:DIFFICULTY[:SEED[:OPS[:MAX_OPERAND]]]], "
                          "e.g. bank:100, bank:100:4, bank:100:2-5:7, bank:24:1-2:0:+-:10")
    lo = int(m["lo"]) if m["lo"] else 3
    hi = int(m["hi"]) if m["hi"] else lo
    if lo < 1 or hi < lo:
        raise SourceError(f"bad bank difficulty in {body!r}: need 1 <= LO <= HI operations")
    max_operand = int(m["max"]) if m["max"] else 20
    if max_operand < 3:
        raise SourceError(f"bad bank spec {body!r}: MAX_OPERAND must be >= 3")
    return BankSpec(int(m["count"]), lo if lo == hi else (lo, hi), int(m["seed"] or 0), m["ops"] or "+-*/",
                    max_operand)


_CODE_BANK = re.compile(r"^(?P<count>\d+)(?::(?P<lo>\d+)(?:-(?P<hi>\d+))?(?::(?P<seed>-?\d+))?)?$")


@dataclass(frozen=True)
class CodeBankSpec:
    count: int
    difficulty: int | tuple[int, int]
    seed: int = 0


def parse_code_bank_spec(body: str) -> CodeBankSpec:
    """`COUNT[:BLOCKS[:SEED]]`; defaults: 3 blocks, seed 0. BLOCKS is a number or a range `LO-HI`."""
    m = _CODE_BANK.match(body.strip())
    least, most = difficulty_range()
    if not m or int(m["count"]) < 1:
        raise SourceError(f"bad code bank spec {body!r}: expected code_bank:COUNT[:BLOCKS[:SEED]], "
                          "e.g. code_bank:50, code_bank:50:4, code_bank:50:2-6:7")
    lo = int(m["lo"]) if m["lo"] else 3
    hi = int(m["hi"]) if m["hi"] else lo
    if not least <= lo <= hi <= most:
        raise SourceError(f"bad code bank difficulty in {body!r}: need {least} <= LO <= HI <= {most} blocks")
    return CodeBankSpec(int(m["count"]), lo if lo == hi else (lo, hi), int(m["seed"] or 0))


def load_problems(spec: str, mapping: FieldMapping | None = None, run_id: str = "adhoc",
                  failures: FailureLog | None = None, cache_dir: str | None = None) -> list[dict]:
    """Rows matching `schema.PROBLEMS` from a source; malformed records go to `failures`.

    Raises SourceError only when the source as a whole cannot be read.
    """
    mapping = mapping or FieldMapping()
    failures = failures if failures is not None else FailureLog(run_id)
    if spec.startswith("bank:"):
        b = parse_bank_spec(spec[len("bank:"):])
        now = datetime.now(timezone.utc)
        return [p.to_row(run_id) | {"created_at": now}
                for p in generate_bank(b.count, b.seed, b.difficulty, b.ops, b.max_operand)]
    if spec.startswith("code_bank:"):
        c = parse_code_bank_spec(spec[len("code_bank:"):])
        now = datetime.now(timezone.utc)
        return [p.to_row(run_id) | {"created_at": now} for p in generate_code_bank(c.count, c.seed, c.difficulty)]
    source, records = _open(spec, mapping, cache_dir)
    validator = RowValidator(source, mapping, run_id, failures)
    rows = []
    for index, record in enumerate(records):
        if mapping.limit is not None and index >= mapping.limit:
            break
        row = validator(record)
        if row is not None:
            rows.append(row)
    return rows


def check_source(spec: str) -> None:
    """Raise SourceError now where `spec` cannot be read at all, before a run starts: a bad bank spec, a
    missing file, a file type no reader knows. Hugging Face datasets are looked at when loaded (the hub
    may need the network), and a file's rows when read (bad rows go to `failures`, not here)."""
    if spec.startswith("bank:"):
        parse_bank_spec(spec[len("bank:"):])
    elif spec.startswith("code_bank:"):
        parse_code_bank_spec(spec[len("code_bank:"):])
    elif not spec.startswith("hf:"):
        fmt, name = _file_spec(spec)
        path = Path(name)
        if path.is_dir() and fmt is None:  # a dataset saved by datasets.save_to_disk
            return
        if not path.is_file():
            raise SourceError(f"{path}: no such file")
        if fmt is None:
            file_format(path)


def _file_spec(spec: str) -> tuple[str | None, str]:
    """(format named by a `jsonl:`/`csv:`/`parquet:` prefix or None, the path as written) of a file source."""
    prefix, _, rest = spec.partition(":")
    if prefix in ("jsonl", "csv", "parquet") and rest:
        return prefix, rest
    return None, spec


def _open(spec: str, mapping: FieldMapping, cache_dir: str | None) -> tuple[str, Iterable[RawRecord]]:
    """(source label stored with every row, records)."""
    if spec.startswith("hf:"):
        from prm_data.sources.hf import read_hf, split_name

        name, config = split_name(spec[len("hf:"):])
        if not name:
            raise SourceError("empty dataset name in hf: spec")
        label = f"hf:{name}{f':{config}' if config else ''}/{mapping.split}"
        return label, read_hf(name, config, mapping.split, mapping.limit, cache_dir)
    fmt, spec = _file_spec(spec)
    path = Path(spec)
    if path.is_dir() and fmt is None:
        from prm_data.sources.hf import read_hf

        return f"hf:{spec}/{mapping.split}", read_hf(str(path), None, mapping.split, mapping.limit, cache_dir)
    records = read_records(path, fmt)
    return f"{fmt or file_format(path)}:{spec}", records


@dataclass
class IngestResult:
    """What `ingest_problems` did: ids written, ids skipped because the warehouse had them."""

    added: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    shard: Path | None = None


def ingest_problems(warehouse, rows: list[dict], run_id: str) -> IngestResult:
    """Write the problems the warehouse does not have yet as one shard; skip the rest.

    The shard is named by a hash of the ids it holds, so rerunning after a crash
    replaces the same shard instead of duplicating it; the check and the write
    happen under the warehouse's `ingest-problems` lock.
    """
    from prm_data.warehouse import shard_name

    result = IngestResult()
    ids = [r["problem_id"] for r in rows]
    if not ids:
        return result
    # Two processes adding overlapping problems at once would both see them missing and both write them.
    with warehouse.lock("ingest-problems", what="adding problems"):
        # an index of which problems shard holds which ids, learnt once per process (issue 21)
        present = set(warehouse.read_keyed("problems", None, "problem_id", ids).column("problem_id").to_pylist())
        fresh = []
        for row in rows:
            if row["problem_id"] in present:
                result.already_present.append(row["problem_id"])
            else:
                present.add(row["problem_id"])  # a repeated id within `rows` is written once
                fresh.append(row)
        if fresh:
            result.added = [r["problem_id"] for r in fresh]
            name = "problems-" + shard_name(*sorted(result.added))
            result.shard = warehouse.write_shard("problems", fresh, run_id=run_id, shard=name)
    return result
