"""Turn raw source records into `problems` rows, or into failures with a reason.

Every reader (files, Hugging Face datasets) yields `RawRecord`s: the decoded
record, or the reason it could not be decoded. `RowValidator` maps a record's
fields to a problem (`FieldMapping`) and checks it: question and answer present,
of the right type, not empty, under the size limit, valid UTF-8, an answer the
grader can read (`answers.gradeable`), id not seen before in this source. HumanEval- and
MBPP-style records (by their keys, or `FieldMapping.format`) become code problems instead
(prm_data/sources/code_records.py). A bad record becomes one `failures` row (stage
`source`) carrying the reason and the offending input; the good ones proceed.

Readers decode text with `errors="surrogateescape"`, so an invalid UTF-8 byte
survives decoding as a lone surrogate in the one field that holds it; that
field, not the whole file, is then rejected here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prm_data.answers import extract_answer, gsm8k_answer
from prm_data.verifiers.protocol import OutcomeSpec
from prm_data.verifiers.registry import ungradeable_reason
from prm_data.failures import FailureLog
from prm_data.sources.bank import problem_id_for
from prm_data.sources.code_records import CodeRecordError, code_problem_fields, detect_format
from prm_data.sources.record_fields import SURROGATE, text_field

STAGE = "source"


class FieldMapping(BaseModel):
    """Which source columns hold the problem, and how to read its final answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question_field: str = Field("question", description="Column holding the problem statement.")
    answer_field: str = Field("answer", description="Column holding the final answer (or a solution to extract it from).")
    answer_format: Literal["plain", "gsm8k", "boxed"] = Field(
        "plain",
        description="How to read the answer column: `plain` takes it as is; `gsm8k` takes the number "
        "after `#### ` (GSM8K, Cobbe et al. 2021) and keeps the text as reference solution; `boxed` "
        "takes the last `\\boxed{}` (MATH, Hendrycks et al. 2021) and keeps the text as reference solution.",
    )
    id_field: str | None = Field(None, description="Column holding a stable problem id; default: a hash of the question.")
    solution_field: str | None = Field(None, description="Column holding a step-by-step reference solution, if any.")
    split: str = Field("train", description="Dataset split to read (Hugging Face sources).")
    limit: int | None = Field(None, ge=1, description="Read at most this many records from the source.")
    max_chars: int = Field(20_000, ge=1, description="Reject a question, answer or solution longer than this many characters.")
    format: Literal["auto", "problem", "humaneval", "mbpp"] = Field(
        "auto", description="Record format: `problem` (question/answer columns as mapped above), `humaneval` "
        "(prompt, canonical_solution, test, entry_point) or `mbpp` (text, code, test_list), code problems "
        "(prm_data/sources/code_records.py); `auto` tells them apart by the first record's keys.")


@dataclass(frozen=True)
class RawRecord:
    """One record as a reader produced it: data, or the reason it could not be decoded."""

    where: str  # "line 3", "row 7": how a person finds it in the source
    data: dict | None
    error: str | None = None
    raw: str | None = None  # the offending input when data is None


class RowValidator:
    """Validates the records of one source, in order; remembers ids to catch duplicates."""

    def __init__(self, source: str, mapping: FieldMapping, run_id: str, failures: FailureLog):
        self.source = source
        self.mapping = mapping
        self.run_id = run_id
        self.failures = failures
        self._seen: dict[str, str] = {}  # problem_id -> where it was first seen
        self.format = None if mapping.format == "auto" else mapping.format  # auto: the first record decides
        self.accepted = 0
        self.rejected = 0

    def __call__(self, record: RawRecord) -> dict | None:
        """The problems row for `record`, or None after recording why it was rejected."""
        if record.error is not None or record.data is None:
            return self._reject(record, record.error or "empty record", record.raw)
        try:
            row = self._to_row(record)
        except RowError as exc:
            return self._reject(record, str(exc), _show(record.data))
        first = self._seen.get(row["problem_id"])
        if first is not None:
            return self._reject(record, f"duplicate problem_id {row['problem_id']!r} (first seen at {first})",
                                _show(record.data))
        self._seen[row["problem_id"]] = record.where
        self.accepted += 1
        return row

    def _reject(self, record: RawRecord, reason: str, shown: str | None) -> None:
        # The reason names the kind of problem (so failures group by it); item_id says where.
        self.rejected += 1
        self.failures.record(STAGE, reason, item_id=f"{self.source}#{record.where}", input=shown)
        return None

    def _to_row(self, record: RawRecord) -> dict:
        m, data = self.mapping, record.data
        if self.format is None:
            self.format = detect_format(data) or "problem"
        if self.format != "problem":
            return self._code_row(record)
        question = _text(data, m.question_field, "question", m.max_chars)
        answer_text = _text(data, m.answer_field, "answer", m.max_chars, numbers_ok=True)
        solution = None
        if m.solution_field is not None:
            solution = _text(data, m.solution_field, "solution", m.max_chars)
        if m.answer_format == "gsm8k":
            answer = gsm8k_answer(answer_text)
            if not answer:
                raise RowError(f"answer field {m.answer_field!r} has no '#### <answer>' line (answer format gsm8k)")
            solution = solution or answer_text
        elif m.answer_format == "boxed":
            answer = extract_answer(answer_text) if ("\\boxed{" in answer_text or "\\fbox{" in answer_text) else None
            if not answer:
                raise RowError(f"answer field {m.answer_field!r} has no complete \\boxed{{...}} (answer format boxed)")
            solution = solution or answer_text
        else:
            answer = answer_text.strip()
        source_id = None
        if m.id_field is not None:
            source_id = _identifier(data, m.id_field)
        metadata = {"where": record.where}
        if source_id is not None:
            metadata["source_id"] = source_id
        row = {
            "problem_id": source_id if source_id is not None else problem_id_for(question),
            "run_id": self.run_id,
            "source": self.source,
            "question": question,
            "answer": answer,
            "reference_solution": solution,
            "difficulty": None,
            "metadata": json.dumps(metadata),
            "created_at": datetime.now(timezone.utc),
        }
        spec = OutcomeSpec.from_problem(row)  # the problem's verifier refuses what it cannot grade
        reason = ungradeable_reason(spec)
        if reason is not None:
            what = f"answer {_clip(answer)!r}" if spec.verifier == "math" else "the problem"
            raise RowError(f"{what} cannot be graded: {reason}")
        return row

    def _code_row(self, record: RawRecord) -> dict:
        """A HumanEval- or MBPP-style record as a code problem (prm_data/sources/code_records.py)."""
        try:
            fields = code_problem_fields(record.data, self.format, self.mapping.max_chars)
        except CodeRecordError as exc:
            raise RowError(str(exc)) from None
        id_field = self.mapping.id_field or ("task_id" if record.data.get("task_id") is not None else None)
        source_id = _identifier(record.data, id_field) if id_field else None
        metadata = {"where": record.where, **fields.pop("metadata")}
        problem_id = problem_id_for(fields["question"])
        if source_id is not None:
            metadata["source_id"] = source_id
            # MBPP numbers its tasks 1, 2, ...: a bare number would collide with other sources' ids
            problem_id = f"{self.format}/{source_id}" if source_id.isdigit() else source_id
        return {"problem_id": problem_id, "run_id": self.run_id, "source": self.source, **fields,
                "metadata": json.dumps(metadata), "created_at": datetime.now(timezone.utc)}


class RowError(ValueError):
    """A record that cannot become a problem; the message is the reason stored in `failures`."""


def _text(data: dict, field: str, role: str, max_chars: int, numbers_ok: bool = False) -> str:
    """The field as text: present, of an accepted type, valid UTF-8, non-empty, not too long."""
    return text_field(data, field, f"{role} field", max_chars, numbers_ok=numbers_ok, error=RowError)


def _identifier(data: dict, field: str) -> str:
    if field not in data or data[field] is None:
        raise RowError(f"missing id field {field!r}")
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"wrong type for id field {field!r}: expected text or an integer, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RowError(f"empty id field {field!r}")
    if SURROGATE.search(text):
        raise RowError(f"id field {field!r} is not valid UTF-8")
    return text


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _show(data: dict) -> str:
    """The record as JSON for the failures table; invalid bytes shown as \\x escapes."""
    def clean(v):
        if isinstance(v, str):
            return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if isinstance(v, bytes):
            return v.decode("utf-8", "backslashreplace")
        return v

    return json.dumps({clean(str(k)): clean(v) for k, v in data.items()}, ensure_ascii=False, default=str)


def clean_text(text: str) -> str:
    """Text with lone surrogates (undecodable bytes) shown as \\x escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
