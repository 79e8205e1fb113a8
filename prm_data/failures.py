"""Failures are data: every request, row or step that could not be processed becomes a
row in the `failures` table with the stage, the reason and the offending input."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

MAX_INPUT_CHARS = 2000


class FailureLog:
    """Collects failure rows for one run; thread-safe; flushed as one shard per stage."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._rows: list[dict] = []
        self._lock = threading.Lock()

    def record(self, stage: str, reason: str, item_id: str | None = None, input: object = None) -> None:
        text = None if input is None else str(input)
        if text is not None and len(text) > MAX_INPUT_CHARS:
            text = text[:MAX_INPUT_CHARS] + f"... [{len(text) - MAX_INPUT_CHARS} more chars]"
        row = {
            "failure_id": uuid.uuid4().hex,
            "run_id": self.run_id,
            "stage": stage,
            "item_id": item_id,
            "reason": reason,
            "input": text,
            "created_at": datetime.now(timezone.utc),
        }
        with self._lock:
            self._rows.append(row)

    @property
    def rows(self) -> list[dict]:
        with self._lock:
            return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def flush(self, warehouse, shard: str) -> Path | None:
        """Write the collected rows as one shard (replacing an earlier one of that name)."""
        rows = self.rows
        if not rows:
            return None
        return warehouse.write_shard("failures", rows, run_id=self.run_id, shard=shard)
