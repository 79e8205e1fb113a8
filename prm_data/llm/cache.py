"""The request cache: every answer paid for is kept, and a rerun reuses it.

Keys are `GenerationRequest.sample_key(backend, model, i)`: a hash of the
backend, model, messages, assistant prefix, sampling parameters, seed and
sample index. Answers live in two places:

- `<warehouse>/tables/llm_cache/run_id=<run>/<journal>.parquet`: compacted
  shards, the durable home (the `llm_cache` table of prm_data/schema.py);
- `<warehouse>/llm_cache_journal/<run>__<pid>_<id>.jsonl`: one append-only
  journal per open cache. Every `put` appends one JSON line and fsyncs it
  before returning, so a process killed with SIGKILL (or a machine that loses
  power) loses only the requests that were still in flight.

`flush()` (and `close()`) compacts this process's journal into a shard named
after the journal and then deletes the journal. Journals left behind by dead
processes are read on load and adopted (compacted) by the next `flush()`:
each open journal holds an exclusive `flock`, which the kernel releases when
its process dies, so a journal that can be locked has no living writer. The
shard name equals the journal name, so a crash between writing the shard and
deleting the journal only makes the next adoption rewrite the same shard.

A torn last line (the process died mid-write) is skipped and counted in
`torn_lines`. Lookups are a dict access: everything is loaded once, when the
cache is opened (about a second per 100k answers).

Who paid: a journal's name (and so its shard's) carries the run and the
process that paid for its answers. An answer paid by *this run* in *another
process* (one killed before its labels were written) is handed out once with
`cached=False`, so the label that uses it after the resume carries its cost,
as it would have without the crash; answers of other runs are plain hits.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from prm_data.llm.types import Sample
from prm_data.schema import LLM_CACHE

JOURNAL_DIR = "llm_cache_journal"
_COLUMNS = LLM_CACHE.names
_PAYER = re.compile(r"^(?P<run>.+)__(?P<pid>\d+)_[0-9a-f]{12}$")  # journal/shard stem: <run>__<pid>_<id>


class RequestCache:
    """Answers by request key, persisted in the warehouse; safe across threads and processes.

    `get(key)` returns the stored `Sample` with `cached=True` (or None; or
    `cached=False` once for an answer this run paid for in a process that
    died, see "Who paid") and counts a hit or a miss; `put(key, sample, backend, model)` journals a new
    answer durably. Other processes' answers are seen when a cache is opened,
    not while it is open.
    """

    def __init__(self, warehouse, run_id: str, fsync: bool = True):
        self.warehouse = warehouse
        self.run_id = run_id
        self.fsync = fsync
        self.journal_dir = Path(warehouse.root) / JOURNAL_DIR
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.torn_lines = 0
        self._rows: dict[str, dict] = {}
        self._resumed: set[str] = set()  # paid by this run in another process, not yet handed out here
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()
        self._journal: Path | None = None
        self._journal_rows = 0
        self._load()

    # ------------------------------------------------------------------ reads
    def _load(self) -> None:
        for path in sorted((self.warehouse.tables_dir / "llm_cache").rglob("*.parquet")):
            if path.name.startswith("."):
                continue  # a writer's temporary file
            cols = pq.read_table(path, columns=_COLUMNS).to_pydict()
            resumed = self._paid_by_this_run_elsewhere(path)
            for i, key in enumerate(cols["request_key"]):
                if key not in self._rows:
                    self._rows[key] = {c: cols[c][i] for c in _COLUMNS}
                    if resumed:
                        self._resumed.add(key)
        for path in sorted(self.journal_dir.glob("*.jsonl")):
            resumed = self._paid_by_this_run_elsewhere(path)
            for row in self._read_journal(path):
                if row["request_key"] not in self._rows:
                    self._rows[row["request_key"]] = row
                    if resumed:
                        self._resumed.add(row["request_key"])

    def _paid_by_this_run_elsewhere(self, path: Path) -> bool:
        m = _PAYER.match(path.stem)
        return bool(m) and m["run"] == self.run_id and int(m["pid"]) != os.getpid()

    def _read_journal(self, path: Path) -> list[dict]:
        rows, torn = read_journal(path)
        self.torn_lines += torn  # lines cut by a kill: those answers are simply not cached
        return rows

    def get(self, key: str) -> Sample | None:
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            paid_by_this_run = key in self._resumed  # see "Who paid" above
            self._resumed.discard(key)
        return Sample(
            text=row["text"],
            finish_reason=row["finish_reason"],
            prompt_tokens=row["prompt_tokens"] or 0,
            completion_tokens=row["completion_tokens"] or 0,
            latency_s=row["latency_s"] or 0.0,
            request_key=key,
            cached=not paid_by_this_run,
            metadata=json.loads(row["metadata"]) if row["metadata"] else {},
        )

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    # ----------------------------------------------------------------- writes
    def put(self, key: str, sample: Sample, backend: str, model: str) -> None:
        """Store an answer; it is on disk (fsynced) when this returns."""
        row = {
            "request_key": key,
            "backend": backend,
            "model": model,
            "text": sample.text,
            "finish_reason": sample.finish_reason,
            "prompt_tokens": int(sample.prompt_tokens),
            "completion_tokens": int(sample.completion_tokens),
            "latency_s": float(sample.latency_s),
            "metadata": json.dumps(sample.metadata, sort_keys=True, default=str),
            "created_at": datetime.now(timezone.utc),
        }
        line = json.dumps({**row, "created_at": row["created_at"].isoformat()}, ensure_ascii=False)
        data = (line + "\n").encode()
        with self._lock:
            if key in self._rows:
                return
            fd = self._open_journal()
            os.write(fd, data)  # O_APPEND: one write per line, never interleaved
            if self.fsync:
                os.fsync(fd)
            self._rows[key] = row
            self._journal_rows += 1

    def _open_journal(self) -> int:
        if self._fd is not None and self._pid != os.getpid():  # a forked child: a journal of its own
            os.close(self._fd)  # the parent's descriptor copy; the parent keeps its lock
            self._fd, self._journal = None, None
        if self._fd is None:
            self._pid = os.getpid()
            name = f"{self.run_id}__{os.getpid()}_{uuid.uuid4().hex[:12]}.jsonl"
            self._journal = self.journal_dir / name
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # released by the kernel if we die
            self._journal_rows = 0
        return self._fd

    def flush(self) -> list[Path]:
        """Compact this cache's journal, and any orphaned one, into `llm_cache` shards.

        Returns the shards written. The cache stays usable: later puts go to a
        fresh journal.
        """
        written = []
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                path = self._journal
                if self._journal_rows:
                    written.append(self._compact(path, self.run_id))
                os.close(self._fd)  # releases the lock
                path.unlink(missing_ok=True)
                self._fd = None
                self._journal = None
        for path in sorted(self.journal_dir.glob("*.jsonl")):
            shard = self._adopt(path)
            if shard is not None:
                written.append(shard)
        return written

    def _compact(self, path: Path, run_id: str) -> Path | None:
        rows = self._read_journal(path)
        if not rows:
            return None
        return self.warehouse.write_shard("llm_cache", rows, run_id=run_id, shard=path.stem)

    def _adopt(self, path: Path) -> Path | None:
        """Compact a journal whose writer is gone; skip one that is still held."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a living process still writes it
            if not path.exists():
                return None  # adopted by someone else between our open and our lock
            run_id = path.stem.rsplit("__", 1)[0] if "__" in path.stem else self.run_id
            shard = self._compact(path, run_id)
            path.unlink(missing_ok=True)
            return shard
        finally:
            os.close(fd)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def journal_path(self) -> Path | None:
        return self._journal


def read_journal(path: Path) -> tuple[list[dict], int]:
    """A journal's rows, and how many torn lines (cut by a kill) were skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # compacted by its owner between glob and read
        return [], 0
    rows, torn = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["created_at"] = datetime.fromisoformat(row["created_at"])
        except (ValueError, KeyError, TypeError):
            torn += 1
            continue
        rows.append(row)
    return rows, torn


def paid_by_run(warehouse, run_id: str) -> dict[str, int]:
    """Requests `run_id` paid for, counted over every process of the run (crashed ones too).

    An answer is paid by the run whose journal (and so shard) holds it; a
    process's own counters lose what its killed predecessors paid, this does
    not. Answers in flight at a kill were never stored and are not counted.
    """
    paid: dict[str, tuple[int, int]] = {}
    shards = sorted((Path(warehouse.tables_dir) / "llm_cache" / f"run_id={run_id}").glob("*.parquet"))
    for path in shards:
        if not path.name.startswith("."):  # a writer's temporary file
            cols = pq.read_table(path, columns=["request_key", "prompt_tokens", "completion_tokens"]).to_pydict()
            for key, p, c in zip(cols["request_key"], cols["prompt_tokens"], cols["completion_tokens"]):
                paid[key] = (p or 0, c or 0)
    for path in sorted((Path(warehouse.root) / JOURNAL_DIR).glob(f"{glob.escape(run_id)}__*.jsonl")):
        if (m := _PAYER.match(path.stem)) and m["run"] == run_id:
            for row in read_journal(path)[0]:
                paid[row["request_key"]] = (row.get("prompt_tokens") or 0, row.get("completion_tokens") or 0)
    return {"requests": len(paid), "prompt_tokens": sum(p for p, _ in paid.values()),
            "completion_tokens": sum(c for _, c in paid.values())}


_OPEN: dict[tuple[str, str], RequestCache] = {}
_OPEN_LOCK = threading.Lock()


def open_cache(warehouse, run_id: str) -> RequestCache:
    """The process-wide cache for (warehouse, run): loaded once, shared by every client of the run.

    Clients of different roles (policy, completer, judge) then share one
    in-memory index and one journal, and see each other's answers at once.
    """
    key = (str(Path(warehouse.root).resolve()), run_id)
    with _OPEN_LOCK:
        cache = _OPEN.get(key)
        if cache is None or cache._pid != os.getpid():
            cache = _OPEN[key] = RequestCache(warehouse, run_id)
        return cache
