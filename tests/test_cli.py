"""The `prm-data` CLI: query (every format, writes refused), tables, problems add."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.sql_guard import read_only_connection
from prm_data.warehouse import Warehouse

runner = CliRunner()


def cli(root: Path, *args: str):
    return runner.invoke(app, ["--warehouse", str(root), *args])


@pytest.fixture()
def root(tmp_path) -> Path:
    """A warehouse holding 6 bank problems."""
    root = tmp_path / "wh"
    result = cli(root, "problems", "add", "bank:6:2:1")
    assert result.exit_code == 0, result.output
    return root


def snapshot(*dirs: Path) -> dict:
    """Every file under the directories with its size and modification time."""
    out = {}
    for d in dirs:
        for p in d.rglob("*"):
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("query", "tables", "problems"):
        assert verb in result.output


def test_query_table_format(root):
    result = cli(root, "query", "SELECT difficulty, count(*) AS n FROM problems GROUP BY ALL")
    assert result.exit_code == 0, result.output
    assert "difficulty" in result.stdout and "6" in result.stdout
    assert "1 row" in result.stdout


def test_query_csv_format_matches_the_warehouse(root):
    sql = "SELECT problem_id, answer, difficulty FROM problems ORDER BY problem_id"
    result = cli(root, "query", sql, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = Warehouse(root).rows(sql)
    assert [(r["problem_id"], r["answer"], int(r["difficulty"])) for r in rows] == \
        [(e["problem_id"], e["answer"], e["difficulty"]) for e in expected]


def test_query_json_format_is_an_array_of_objects(root):
    result = cli(root, "query", "SELECT problem_id, created_at, difficulty FROM problems ORDER BY 1", "-f", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 6
    assert set(rows[0]) == {"problem_id", "created_at", "difficulty"}
    assert rows[0]["created_at"].endswith("+00:00")  # timestamps as ISO 8601


def test_query_parquet_format_needs_and_writes_an_output_file(root, tmp_path):
    out = tmp_path / "out.parquet"
    result = cli(root, "query", "SELECT problem_id, answer FROM problems", "--format", "parquet", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 6
    refused = cli(root, "query", "SELECT 1", "--format", "parquet")
    assert refused.exit_code == 2
    assert "--output" in refused.stderr


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "table"])
def test_query_output_that_cannot_be_written_is_one_line_and_leaves_no_file(root, tmp_path, fmt):
    taken = tmp_path / "taken"
    taken.mkdir()
    for target, reason in ((tmp_path / "absent" / f"out.{fmt}", "no folder"), (taken, "Is a directory")):
        result = cli(root, "query", "SELECT * FROM problems", "--format", fmt, "--output", str(target))
        assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
        assert result.stderr.strip().startswith(f"error: cannot write --output {target}: ")
        assert reason in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*") if p.suffix == ".tmp") == []
    assert list(taken.iterdir()) == []


def test_query_output_file_and_params(root, tmp_path):
    out = tmp_path / "out.csv"
    result = cli(root, "query", "SELECT count(*) AS n FROM problems WHERE difficulty = ? AND source = ?",
                 "--param", "2", "--param", "bank", "--format", "csv", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text() == "n\n6\n"


def test_query_reads_the_convenience_views_and_describe(root):
    for sql in ("SELECT * FROM problem_stats", "DESCRIBE problems", "SHOW TABLES", "EXPLAIN SELECT * FROM problems",
                "PRAGMA table_info('problems')", "SUMMARIZE problems"):
        result = cli(root, "query", sql, "-f", "json")
        assert result.exit_code == 0, (sql, result.output)
        assert json.loads(result.stdout), sql


WRITES = [
    "INSERT INTO problems SELECT * FROM problems",
    "CREATE TABLE stolen AS SELECT * FROM problems",
    "COPY (SELECT * FROM problems) TO '{out}/copied.csv'",
    "ATTACH '{out}/attached.duckdb' AS other",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/explained.csv'",
    "EXPORT DATABASE '{out}/exported'",
    "DELETE FROM problems",
    "DROP VIEW problems",
    "SET threads = 1",
    "INSTALL httpfs",
    "SELECT 1; CREATE TABLE t AS SELECT 1",
    "CREATE OR REPLACE VIEW problems AS SELECT 1",
]


@pytest.mark.parametrize("sql", WRITES)
def test_query_refuses_writes_with_exit_code_2_and_writes_nothing(root, tmp_path, sql):
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(root, out)
    result = cli(root, "query", sql.format(out=out))
    assert result.exit_code == 2, result.output
    assert "refused" in result.stderr
    assert snapshot(root, out) == before
    assert Warehouse(root).scalar("SELECT count(*) FROM problems") == 6


def test_query_sql_errors_exit_1_with_the_message(root):
    result = cli(root, "query", "SELECT * FROM no_such_table")
    assert result.exit_code == 1
    assert "no_such_table" in result.stderr


def test_the_query_connection_itself_cannot_write(root, tmp_path):
    """Second line of defence, without the statement check: the engine refuses writes."""
    con = read_only_connection(Warehouse(root))
    try:
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE t (a INT)")
        with pytest.raises(duckdb.Error):
            con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
        with pytest.raises(duckdb.Error):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error):
            con.execute("SELECT * FROM read_text('/etc/hostname')")
        assert con.execute("SELECT count(*) FROM problems").fetchall() == [(6,)]
    finally:
        con.close()
    assert not (tmp_path / "x.csv").exists()


def test_tables_lists_tables_and_views_with_counts(root):
    result = cli(root, "tables", "--format", "json")
    assert result.exit_code == 0, result.output
    by_name = {t["name"]: t for t in json.loads(result.stdout)}
    assert by_name["problems"] == {"name": "problems", "kind": "table", "rows": 6, "shards": 1}
    assert by_name["runs"]["rows"] == 1  # the problems add run
    assert by_name["rollouts"]["rows"] == 0
    assert by_name["problem_stats"]["kind"] == "view" and by_name["problem_stats"]["rows"] == 6
    assert {"first_error", "label_agreement"} <= set(by_name)
    pretty = cli(root, "tables")
    assert pretty.exit_code == 0 and "problem_stats" in pretty.stdout and "step_labels" in pretty.stdout


def test_problems_add_reports_added_and_skipped_rows(tmp_path):
    root = tmp_path / "wh"
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"\n".join([
        json.dumps({"question": "What is 2+2?", "answer": "4"}).encode(),
        json.dumps({"question": "", "answer": "4"}).encode(),
        json.dumps({"question": "Where is the answer?"}).encode(),
        b"{broken",
        json.dumps({"question": "What is 3+3?", "answer": 6}).encode(),
    ]))
    result = cli(root, "problems", "add", str(source))
    assert result.exit_code == 0, result.output
    assert "added 2 problems" in result.stdout
    assert "3 skipped as malformed" in result.stdout
    for reason in ("empty question field", "missing answer field", "not valid JSON"):
        assert reason in result.stdout

    warehouse = Warehouse(root)
    assert warehouse.scalar("SELECT count(*) FROM failures WHERE stage = 'source'") == 3
    [run] = warehouse.rows("SELECT flow, status, summary FROM runs")
    assert (run["flow"], run["status"]) == ("problems add", "completed")
    assert json.loads(run["summary"])["added"] == 2

    again = cli(root, "problems", "add", str(source))
    assert again.exit_code == 0
    assert "added 0 problems, 2 already in the warehouse" in again.stdout
    assert warehouse.scalar("SELECT count(*) FROM problems") == 2


def test_problems_add_with_mapping_options(tmp_path):
    root = tmp_path / "wh"
    source = tmp_path / "gsm.csv"
    source.write_text('uid,problem,solution\n7,"What is 10*3?","10*3=30\n#### 30"\n')
    result = cli(root, "problems", "add", str(source), "--question-field", "problem", "--answer-field", "solution",
                 "--answer-format", "gsm8k", "--id-field", "uid")
    assert result.exit_code == 0, result.output
    [row] = Warehouse(root).rows("SELECT problem_id, answer, reference_solution FROM problems")
    assert row == {"problem_id": "7", "answer": "30", "reference_solution": "10*3=30\n#### 30"}


def test_problems_add_exits_1_when_nothing_is_usable(tmp_path):
    root = tmp_path / "wh"
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"q": "wrong column", "a": "1"}) + "\n")
    result = cli(root, "problems", "add", str(source))
    assert result.exit_code == 1
    assert "missing question field 'question'" in result.stdout
    assert "gave no valid problem" in result.stderr
    assert Warehouse(root).scalar("SELECT count(*) FROM failures") == 1

    missing = cli(root, "problems", "add", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1
    assert "no such file" in missing.stderr


def test_warehouse_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PRM_DATA_WAREHOUSE", str(tmp_path / "from_env"))
    result = runner.invoke(app, ["problems", "add", "bank:2"])
    assert result.exit_code == 0, result.output
    assert Warehouse(tmp_path / "from_env").scalar("SELECT count(*) FROM problems") == 2


def test_console_script_runs_without_importing_prefect(tmp_path):
    code = ("import sys; from prm_data.cli import app; import prm_data.sources, prm_data.sql_guard; "
            "import prm_data.sources.files, prm_data.sources.hf, prm_data.sources.validate; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'prefect'], 'prefect imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    script = Path(sys.executable).with_name("prm-data")
    if not script.exists():
        pytest.skip("console script not installed in this environment (pip install -e .)")
    Warehouse(tmp_path / "wh")
    done = subprocess.run([str(script), "--warehouse", str(tmp_path / "wh"), "query", "SELECT 41 + 1 AS x",
                           "-f", "csv"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "x\n42\n"


@pytest.mark.slow
def test_query_works_while_a_duckdb_session_holds_the_file_read_only(root):
    """The docs tell people to open prm.duckdb with `duckdb -readonly`; queries must still run."""
    Warehouse(root).sync_views()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
         "print('ready', flush=True); time.sleep(60)", str(root / "prm.duckdb")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = cli(root, "query", "SELECT count(*) AS n FROM problems", "-f", "csv")
        assert result.exit_code == 0, result.output
        assert result.stdout == "n\n6\n"
    finally:
        holder.kill()
        holder.wait(10)


# ------------------------------------------------------------------ conventions a user expects
def _console(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("prm-data")
    if not script.exists():
        pytest.skip("console script not installed in this environment (pip install -e .)")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    done = _console("--version")
    assert done.returncode == 0 and done.stdout == f"prm-data {version('prm-data')}\n"


def test_help_documents_the_exit_codes():
    text = " ".join(runner.invoke(app, ["--help"]).output.replace("│", " ").split())
    assert "Exit codes: 0 done" in text and "1 failed" in text and "2 usage error" in text


def test_a_yaml_syntax_error_in_a_run_config_is_one_line_with_file_and_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nproblems:\n  source: [bank\n  limit: : 3\n")
    done = _console("--warehouse", str(tmp_path / "wh"), "run", "-c", str(tmp_path / "bad.yaml"))
    assert done.returncode == 2
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: bad run config {tmp_path / 'bad.yaml'}:4:"), done.stderr
    assert "YAML syntax error" in lines[0]


@pytest.mark.parametrize("url, says", [
    ("not a url", "'not a url' is not an http(s) URL with a host"),
    ("ftp://h/v1", "'ftp://h/v1' is not an http(s) URL with a host"),
    ("http://user:s3cr3t-key@h:8000/v1", "carries credentials: put the key in the environment variable"),
])
def test_a_bad_base_url_is_one_line_naming_the_field_and_never_echoes_a_secret(tmp_path, url, says):
    backend = {"kind": "openai", "model": "m", "base_urls": [url], "api_key_env": None}
    (tmp_path / "run.yaml").write_text(json.dumps({"name": "x", "policy": backend}))
    done = _console("--warehouse", str(tmp_path / "wh"), "run", "-c", str(tmp_path / "run.yaml"), "--serial")
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: bad run config {tmp_path / 'run.yaml'}: policy.base_urls: ") and says in lines[0]
    assert "s3cr3t" not in done.stderr + done.stdout and "errors.pydantic.dev" not in lines[0]
    assert not (tmp_path / "wh").exists()


def test_tables_shows_the_columns_of_a_table_with_their_schema_types(root):
    result = cli(root, "tables", "final_labels", "first_error", "--format", "json")
    assert result.exit_code == 0, result.output
    cols = json.loads(result.output)
    from prm_data.schema import TABLES

    assert [(c["column"], c["type"]) for c in cols if c["name"] == "final_labels"] == [
        (f.name, str(f.type)) for f in TABLES["final_labels"]]
    assert "labeled_steps" in {c["column"] for c in cols if c["name"] == "first_error"}
    unknown = cli(root, "tables", "final_lables")
    assert unknown.exit_code == 2 and "no table or view 'final_lables'" in unknown.output


def test_first_error_labeled_steps_counts_labels_not_abstentions(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("step_labels", [
        {"run_id": "r", "problem_id": "p", "rollout_id": "x", "step_index": i, "labeler": "judge_vote",
         "labeler_version": "1", "value": None, "hard_label": label, "confidence": 0.0, "prompt_tokens": 0,
         "completion_tokens": 0, "calls": 0} for i, label in enumerate([True, None, False, None])], run_id="r")
    assert wh.rows("SELECT first_error_step, labeled_steps FROM first_error") == [
        {"first_error_step": 2, "labeled_steps": 2}]


@pytest.mark.parametrize("options, named", [
    (["--tokenizer", "/some/tokenizer"], "--tokenizer applies"),
    (["--reward-gamma", "0.9", "--reward-transform", "potential", "-f", "stepwise"],
     "--reward-transform, --reward-gamma apply"),
])
def test_export_refuses_rl_rewards_options_without_the_rl_rewards_format(root, tmp_path, options, named):
    """An option the chosen formats never read would be dropped without a word: refused, nothing written."""
    result = cli(root, "export", "--out", str(tmp_path / "out"), *options)
    assert result.exit_code == 2
    assert f"{named} only to the rl_rewards format: add -f rl_rewards" in result.stderr
    assert not (tmp_path / "out").exists()


def test_schedule_refuses_a_bad_cron_before_serving(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    result = cli(tmp_path / "wh", "schedule", "--cron", "every night")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --cron 'every night': Invalid cron string")


def test_train_names_a_missing_dataset_or_model_path_in_one_line_before_loading_anything(root, tmp_path):
    missing_set = cli(root, "train", "--dataset", str(tmp_path / "no-export"), "--model", "/no/model")
    assert missing_set.exit_code == 1
    assert missing_set.stderr.strip() == (f"error: {tmp_path / 'no-export'}: no such export folder (write one "
                                          f"with `prm-data export --out {tmp_path / 'no-export'}`)")
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    missing_model = cli(root, "train", "--dataset", str(export_dir), "--model", "/no/model")
    assert missing_model.exit_code == 1
    assert missing_model.stderr.strip().startswith("error: --model /no/model: no such file or folder")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("model, a_path", [("/no/model", True), ("./no-model", True), ("~/no-model", True),
                                           ("a/b/c", True), ("no-config.json", True), ("gpt2", False),
                                           ("Qwen/Qwen2.5-Math-1.5B", False)])
def test_train_takes_only_what_can_only_be_a_path_for_a_path(model, a_path):
    from prm_data.commands.train import _names_a_path

    assert _names_a_path(model) is a_path
