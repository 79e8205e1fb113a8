"""Problem files: JSON Lines, CSV/TSV and Parquet readers yielding `RawRecord`s.

Readers never raise on a bad record: a line that is not JSON, a CSV row with
more cells than the header, a file-level decoding problem inside one row all
become records carrying the reason, so validation can turn each into a
`failures` row while the good records proceed. Only a file that cannot be
opened or parsed at all (missing, unreadable Parquet footer) raises
`SourceError`.

Text is decoded as UTF-8 with `surrogateescape` (see validate.py): one invalid
byte rejects the one field holding it, not the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from prm_data.sources.validate import RawRecord, clean_text

FORMATS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}


class SourceError(RuntimeError):
    """A whole source could not be read (missing file, unknown format, corrupt container)."""


def file_format(path: Path) -> str:
    """`jsonl`, `csv` or `parquet` from the file name (a trailing `.gz` is allowed for text formats)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise SourceError(f"{path}: unknown file type; expected one of {', '.join(sorted(FORMATS))} "
                          "(or prefix the path with jsonl:, csv: or parquet:)")
    return fmt


def read_records(path: Path, fmt: str | None = None) -> Iterator[RawRecord]:
    """Records of a problem file in order; `fmt` overrides the format guessed from the name."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    fmt = fmt or file_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return read_csv(path, delimiter="\t" if ".tsv" in [s.lower() for s in path.suffixes] else ",")
    if fmt == "parquet":
        return read_parquet(path)
    raise SourceError(f"unknown file format {fmt!r}; expected jsonl, csv or parquet")


def _text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SourceError(f"{path}: not a valid gzip file ({exc})") from exc
    return data.decode("utf-8-sig", errors="surrogateescape")


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One JSON object per line (blank lines ignored); a file holding one JSON array also works."""
    text = _text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _json_array(path, stripped)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRecord(where, None, f"not valid JSON ({exc.msg} at column {exc.colno})", clean_text(line))
            continue
        if not isinstance(value, dict):
            yield RawRecord(where, None, f"expected a JSON object, got {type(value).__name__}", clean_text(line))
            continue
        yield RawRecord(where, value)


def _json_array(path: Path, text: str) -> Iterator[RawRecord]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(values, list):
        raise SourceError(f"{path}: expected a JSON array of objects or one object per line")
    for number, value in enumerate(values, start=1):
        where = f"item {number}"
        if isinstance(value, dict):
            yield RawRecord(where, value)
        else:
            yield RawRecord(where, None, f"expected a JSON object, got {type(value).__name__}",
                            clean_text(json.dumps(value, default=str)))


def read_csv(path: Path, delimiter: str = ",") -> Iterator[RawRecord]:
    """CSV with a header row; every cell is text (validation accepts text answers)."""
    reader = csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter, restkey="\x00extra")
    number = 0
    try:
        for row in reader:
            number += 1
            where = f"row {number} (line {reader.line_num})"
            extra = row.pop("\x00extra", None)
            if extra is not None:
                shown = delimiter.join(str(v) for v in list(row.values()) + extra)
                yield RawRecord(where, None, f"{len(row) + len(extra)} cells but the header has {len(row)}",
                                clean_text(shown))
                continue
            yield RawRecord(where, row)
    except csv.Error as exc:
        yield RawRecord(f"row {number + 1} (line {reader.line_num})", None, f"malformed CSV ({exc}); "
                        "the rest of the file was not read", None)


def read_parquet(path: Path) -> Iterator[RawRecord]:
    """Parquet rows as dicts (binary columns stay bytes; validation decodes them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({exc})") from exc
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield RawRecord(f"row {number}", row)
