"""Problem sources: good rows proceed, every malformed row lands in `failures` with its reason."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm_data.answers import grade
from prm_data.failures import FailureLog
from prm_data.schema import to_table
from prm_data.sources import FieldMapping, SourceError, ingest_problems, load_problems
from prm_data.sources.bank import problem_id_for
from prm_data.warehouse import Warehouse

GOOD = [
    {"id": "g1", "question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "7"},
    {"id": "g2", "question": "What is half of 9?", "answer": "\\frac{9}{2}"},
    {"id": "g3", "question": "What is 6 times 7?", "answer": 42},
]


def write_jsonl(path, lines: list) -> None:
    """Each entry is a dict (written as JSON) or raw bytes (written as is)."""
    with open(path, "wb") as fh:
        for line in lines:
            fh.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            fh.write(b"\n")


def load(spec, mapping=None, **kw):
    failures = FailureLog("run-1")
    rows = load_problems(str(spec), mapping or FieldMapping(), run_id="run-1", failures=failures, **kw)
    return rows, failures.rows


def reasons(failures) -> list[str]:
    return [f["reason"] for f in failures]


def test_jsonl_good_rows_become_problem_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, GOOD)
    rows, failures = load(path)
    assert failures == []
    assert [r["question"] for r in rows] == [g["question"] for g in GOOD]
    assert [r["answer"] for r in rows] == ["7", "\\frac{9}{2}", "42"]
    assert rows[0]["problem_id"] == problem_id_for(GOOD[0]["question"])
    assert rows[0]["source"] == f"jsonl:{path}"
    to_table("problems", rows)  # the rows satisfy the schema


def test_jsonl_malformed_rows_are_failures_with_reasons_and_good_rows_proceed(tmp_path):
    path = tmp_path / "mixed.jsonl"
    huge = "Count the apples. " * 60_000  # about 1 MB
    write_jsonl(path, [
        GOOD[0],
        {"answer": "3"},                                   # line 2: no question
        {"question": "What is 1+1?"},                      # line 3: no answer
        {"question": 17, "answer": "3"},                   # line 4: question not text
        {"question": "Pick two.", "answer": [1, 2]},       # line 5: answer a list
        {"question": "   ", "answer": "3"},                # line 6: blank question
        {"question": huge, "answer": "3"},                 # line 7: over the size limit
        b'{"question": "Caf\xe9 costs? ", "answer": "4"}',  # line 8: Latin-1 byte, not UTF-8
        b"{not json",                                      # line 9
        b"[1, 2]",                                         # line 10: not an object
        {"question": "Is it true?", "answer": True},       # line 11: bool is not an answer
        {"question": "x", "answer": None},                 # line 12: null answer
        GOOD[1],
    ])
    rows, failures = load(path)

    assert [r["question"] for r in rows] == [GOOD[0]["question"], GOOD[1]["question"]]
    by_line = {f["item_id"].split("#")[1]: f for f in failures}
    assert sorted(by_line) == sorted(f"line {n}" for n in range(2, 13))
    assert by_line["line 2"]["reason"] == "missing question field 'question'"
    assert by_line["line 3"]["reason"] == "missing answer field 'answer'"
    assert "wrong type for question field 'question'" in by_line["line 4"]["reason"]
    assert "got int" in by_line["line 4"]["reason"]
    assert "got list" in by_line["line 5"]["reason"]
    assert by_line["line 6"]["reason"] == "empty question field 'question'"
    assert "over the limit of 20000" in by_line["line 7"]["reason"]
    assert f"is {len(huge)} characters" in by_line["line 7"]["reason"]
    assert "not valid UTF-8 (byte 0xe9" in by_line["line 8"]["reason"]
    assert "not valid JSON" in by_line["line 9"]["reason"]
    assert "expected a JSON object, got list" in by_line["line 10"]["reason"]
    assert "got bool" in by_line["line 11"]["reason"]
    assert by_line["line 12"]["reason"] == "missing answer field 'answer'"
    # the offending input is kept (bad bytes escaped, huge inputs truncated)
    assert json.loads(by_line["line 8"]["input"])["question"] == "Caf\\xe9 costs? "
    assert by_line["line 9"]["input"] == "{not json"
    assert len(by_line["line 7"]["input"]) < 3000
    assert all(f["stage"] == "source" and f["run_id"] == "run-1" for f in failures)


def test_size_limit_is_configurable(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [{"question": "q" * 60, "answer": "1"}, {"question": "q" * 40, "answer": "1"}])
    rows, failures = load(path, FieldMapping(max_chars=50))
    assert [len(r["question"]) for r in rows] == [40]
    assert reasons(failures) == ["question field 'question' is 60 characters, over the limit of 50"]


def test_duplicate_ids_keep_the_first_and_record_the_rest(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [GOOD[0], GOOD[1] | {"id": "g1"}, GOOD[2]])
    rows, failures = load(path, FieldMapping(id_field="id"))
    assert [r["problem_id"] for r in rows] == ["g1", "g3"]
    assert reasons(failures) == ["duplicate problem_id 'g1' (first seen at line 1)"]


def test_same_question_twice_is_a_duplicate_without_an_id_column(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [GOOD[0], GOOD[0] | {"answer": "8"}])
    rows, failures = load(path)
    assert len(rows) == 1
    assert reasons(failures)[0].startswith("duplicate problem_id")


def test_missing_or_bad_id_is_a_failure(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [GOOD[0], GOOD[1] | {"id": None}, GOOD[2] | {"id": 3.5}])
    rows, failures = load(path, FieldMapping(id_field="id"))
    assert [r["problem_id"] for r in rows] == ["g1"]
    assert reasons(failures)[0] == "missing id field 'id'"
    assert "wrong type for id field 'id'" in reasons(failures)[1]


def test_csv_rows_with_bad_cells_are_failures(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(
        b"question,answer\n"
        b"What is 2+2?,4\n"
        b"What is 3+3?,\n"               # row 2: empty answer
        b"What is 4+4?\n"                # row 3: answer cell missing
        b"What is 5+5?,10,extra\n"       # row 4: too many cells
        b"Wie viel kostet \xfc?,3\n"      # row 5: Latin-1 byte
        b'"A ""quoted"", multi\nline question",12\n'
        b"What is 2+2?,4\n"              # row 7: duplicate of row 1
    )
    rows, failures = load(path)
    assert [r["answer"] for r in rows] == ["4", "12"]
    assert rows[1]["question"] == 'A "quoted", multi\nline question'
    assert rows[0]["source"] == f"csv:{path}"
    got = {f["item_id"].split("#")[1].split(" (")[0]: f["reason"] for f in failures}
    assert got == {
        "row 2": "empty answer field 'answer'",
        "row 3": "missing answer field 'answer'",
        "row 4": "3 cells but the header has 2",
        "row 5": "question field 'question' is not valid UTF-8 (byte 0xfc at character 16)",
        "row 7": "duplicate problem_id '" + problem_id_for("What is 2+2?") + "' (first seen at row 1 (line 2))",
    }


def test_tsv_and_gzipped_jsonl_are_read(tmp_path):
    tsv = tmp_path / "p.tsv"
    tsv.write_text("question\tanswer\nWhat is 1, plus 1?\t2\n")
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(json.dumps(g).encode() + b"\n" for g in GOOD)))
    assert [r["answer"] for r in load(tsv)[0]] == ["2"]
    assert len(load(gz)[0]) == 3


def test_parquet_typed_columns_nulls_and_binary(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({
        "question": pa.array([b"What is 1+1?", None, b"Bad \xff bytes", b"What is 5/2?"], pa.binary()),
        "answer": pa.array([2.0, 1.0, 3.0, 2.5]),
    }), path)
    rows, failures = load(path)
    assert [(r["question"], r["answer"]) for r in rows] == [("What is 1+1?", "2"), ("What is 5/2?", "2.5")]
    assert reasons(failures) == ["missing question field 'question'",
                                 "question field 'question' is not valid UTF-8 (byte 0xff at offset 4)"]
    assert rows[0]["source"] == f"parquet:{path}"


def test_parquet_non_finite_answer_is_a_failure(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": ["a?", "b?"], "answer": [float("nan"), 4.0]}), path)
    rows, failures = load(path)
    assert [r["answer"] for r in rows] == ["4"]
    assert "not a finite number" in reasons(failures)[0]


def test_field_mapping_and_limit(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [{"problem": f"What is {i}+1?", "solution": f"It is {i + 1}.", "final": i + 1, "uid": i}
                       for i in range(10)])
    mapping = FieldMapping(question_field="problem", answer_field="final", solution_field="solution",
                           id_field="uid", limit=4)
    rows, failures = load(path, mapping)
    assert failures == []
    assert [(r["problem_id"], r["answer"], r["reference_solution"]) for r in rows] == [
        (str(i), str(i + 1), f"It is {i + 1}.") for i in range(4)]


def test_boxed_answer_format(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [{"question": "Half of 3?", "answer": "It is $\\boxed{\\frac{3}{2}}$."},
                       {"question": "Two?", "answer": "It is 2."}])
    rows, failures = load(path, FieldMapping(answer_format="boxed"))
    assert rows[0]["answer"] == "\\frac{3}{2}"
    assert rows[0]["reference_solution"] == "It is $\\boxed{\\frac{3}{2}}$."
    assert "no complete \\boxed{...}" in reasons(failures)[0]


GSM8K_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "A shop sells 1,200 pens a day. How many in 2 days?", "answer": "1200*2=2400\n#### 2,400"},
    {"question": "No final line here?", "answer": "The answer is 5."},
]


def test_local_hf_dataset_directory_with_gsm8k_answers(tmp_path):
    data = tmp_path / "gsm8k_like"
    data.mkdir()
    write_jsonl(data / "train.jsonl", GSM8K_ROWS)
    write_jsonl(data / "test.jsonl", GSM8K_ROWS[:1])
    mapping = FieldMapping(answer_format="gsm8k", split="train")
    rows, failures = load(f"hf:{data}", mapping, cache_dir=str(tmp_path / "cache"))

    assert [r["answer"] for r in rows] == ["72", "2400"]
    assert rows[0]["reference_solution"].endswith("#### 72")
    assert rows[0]["source"] == f"hf:{data}/train"
    assert reasons(failures) == ["answer field 'answer' has no '#### <answer>' line (answer format gsm8k)"]

    test_rows, _ = load(data, mapping.model_copy(update={"split": "test"}), cache_dir=str(tmp_path / "cache"))
    assert len(test_rows) == 1


def test_dataset_saved_to_disk_is_read(tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(GSM8K_ROWS[:2])}).save_to_disk(str(saved))
    rows, failures = load(f"hf:{saved}", FieldMapping(answer_format="gsm8k"))
    assert failures == []
    assert [r["answer"] for r in rows] == ["72", "2400"]
    with pytest.raises(SourceError, match="no split 'validation'"):
        load(f"hf:{saved}", FieldMapping(split="validation"))


def test_unreadable_sources_raise_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        load(tmp_path / "missing.jsonl")
    (tmp_path / "p.xlsx").write_text("x")
    with pytest.raises(SourceError, match="unknown file type"):
        load(tmp_path / "p.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        load(tmp_path / "bad.parquet")
    with pytest.raises(SourceError, match="bad bank spec"):
        load("bank:many")


def test_format_prefix_overrides_the_file_name(tmp_path):
    path = tmp_path / "problems.txt"
    write_jsonl(path, GOOD[:1])
    rows, _ = load(f"jsonl:{path}")
    assert rows[0]["source"] == f"jsonl:{path}"


def test_bank_spec_is_seeded_with_difficulty_range():
    rows, failures = load("bank:6:2-4:7")
    again, _ = load("bank:6:2-4:7")
    other_seed, _ = load("bank:6:2-4:8")
    assert failures == []
    assert [r["problem_id"] for r in rows] == [r["problem_id"] for r in again]
    assert {r["problem_id"] for r in rows}.isdisjoint(r["problem_id"] for r in other_seed)
    assert {r["difficulty"] for r in rows} == {2, 3, 4}
    for r in rows:
        assert grade(r["reference_solution"], r["answer"])[0] == "correct"
    to_table("problems", rows)


def test_ingest_writes_new_problems_and_failures_and_skips_known_ones(tmp_path):
    warehouse = Warehouse(tmp_path / "wh")
    path = tmp_path / "p.jsonl"
    write_jsonl(path, GOOD + [{"question": "", "answer": "1"}])
    failures = FailureLog("run-1")
    rows = load_problems(str(path), run_id="run-1", failures=failures)
    first = ingest_problems(warehouse, rows, "run-1")
    failures.flush(warehouse, shard="source")

    assert len(first.added) == 3 and first.already_present == []
    stored = warehouse.rows("SELECT question, answer FROM problems ORDER BY question")
    assert stored == sorted(({"question": g["question"], "answer": str(g["answer"])} for g in GOOD),
                            key=lambda r: r["question"])
    [failure] = warehouse.rows("SELECT stage, item_id, reason, input FROM failures WHERE run_id = 'run-1'")
    assert failure["stage"] == "source"
    assert failure["item_id"] == f"jsonl:{path}#line 4"
    assert failure["reason"] == "empty question field 'question'"
    assert json.loads(failure["input"]) == {"question": "", "answer": "1"}

    write_jsonl(path, GOOD + [{"question": "What is 10-1?", "answer": "9"}])
    second = ingest_problems(warehouse, load_problems(str(path), run_id="run-2"), "run-2")
    assert len(second.already_present) == 3
    assert second.added == [problem_id_for("What is 10-1?")]
    assert warehouse.scalar("SELECT count(*) FROM problems") == 4
    assert ingest_problems(warehouse, [], "run-3").shard is None
