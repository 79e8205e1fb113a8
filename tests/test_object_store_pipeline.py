"""`warehouse: s3://...` runs the whole pipeline, and every CLI reader, against a real S3-compatible
server on 127.0.0.1 (moto's, tests/s3_support.py) with the same rows as a local run (issue 20).

The sim config is configs/sim.yaml with a smaller bank (4 problems, 4 rollouts each), run serially,
once on a local folder and once on the server; only the warehouse differs. (Every stage runs
at any bank size: a bigger one costs test time, not coverage.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.pipeline.serial import run_serial
from s3_support import SECRET, bucket_objects, s3_endpoint, s3_root  # noqa: F401 (fixtures)
from test_executors import sim_yaml, table_contents

runner = CliRunner()


def small_sim(root: Path, warehouse: str | None = None):
    config = sim_yaml(root, problems={"source": "bank:4:3:0"}, rollouts={"n": 4})
    return config.model_copy(update={"warehouse": warehouse}) if warehouse else config


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    config = small_sim(tmp_path_factory.mktemp("local"))
    return config, run_serial(config)


@pytest.fixture
def s3_run(s3_root, tmp_path):
    config = small_sim(tmp_path, warehouse=s3_root)
    return config, run_serial(config)


def export_tables(folder: Path) -> dict[str, list[dict]]:
    return {str(p.relative_to(folder)): pq.read_table(p).to_pylist() for p in sorted(folder.rglob("*.parquet"))}


def test_the_sim_pipeline_on_s3_writes_the_same_rows_as_on_a_local_folder(local_run, s3_run, s3_endpoint, s3_root,
                                                                          tmp_path):
    (local_config, local_summary), (s3_config, s3_summary) = local_run, s3_run
    assert s3_summary["run_id"] == local_summary["run_id"]
    local_tables, s3_tables = table_contents(local_config), table_contents(s3_config)
    assert {t: len(rows) for t, rows in s3_tables.items()} == {t: len(rows) for t, rows in local_tables.items()}
    assert s3_tables == local_tables
    assert len(s3_tables["step_labels"]) > 0 and len(s3_tables["final_labels"]) > 0
    # the pipeline's export stage read the warehouse on the server: the same dataset files
    assert export_tables(Path(s3_config.export.out_dir)) == export_tables(Path(local_config.export.out_dir))
    # and everything is in the bucket, nothing in a local folder named like the URL
    keys = bucket_objects(s3_endpoint, s3_root)
    assert any("/tables/step_labels/run_id=" in k and k.endswith(".commit") for k in keys)
    assert not list(tmp_path.rglob("s3:*"))

    # the secret key in the environment appears in no object of the bucket and no file the run wrote
    needle = SECRET.encode()
    assert not [k for k, body in keys.items() if needle in body or SECRET in k]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and needle in p.read_bytes()]

    # every CLI reader, run against the server
    result = runner.invoke(app, ["--warehouse", s3_root, "tables", "--format", "json"])
    assert result.exit_code == 0, result.output
    counts = {t["name"]: t["rows"] for t in json.loads(result.output)}
    assert {t: counts[t] for t in local_tables} == {t: len(rows) for t, rows in local_tables.items()}
    result = runner.invoke(app, ["--warehouse", s3_root, "query", "--format", "json",
                                 "SELECT labeler, count(*) AS n, round(sum(value), 6) AS v FROM step_labels "
                                 "GROUP BY ALL ORDER BY labeler"])
    assert result.exit_code == 0, result.output
    local = runner.invoke(app, ["--warehouse", local_config.warehouse, "query", "--format", "json",
                                "SELECT labeler, count(*) AS n, round(sum(value), 6) AS v FROM step_labels "
                                "GROUP BY ALL ORDER BY labeler"])
    assert json.loads(result.output) == json.loads(local.output) != []
    out_s3, out_local = tmp_path / "cli-export-s3", tmp_path / "cli-export-local"
    for root, out in ((s3_root, out_s3), (local_config.warehouse, out_local)):
        result = runner.invoke(app, ["--warehouse", root, "export", "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert export_tables(out_s3) == export_tables(out_local) != {}


def test_a_query_on_s3_reads_nothing_outside_the_warehouse(s3_root, tmp_path):
    from prm_data.warehouses import open_warehouse

    open_warehouse(s3_root).write_shard("problems", [{"problem_id": "p", "run_id": "r", "source": "t", "question": "q",
                                                 "answer": "1", "reference_solution": "s"}], run_id="r", shard="a")
    secret_file = tmp_path / "local.csv"
    secret_file.write_text("a\n1\n")
    other = s3_root.rsplit("/", 1)[0] + "/elsewhere/x.parquet"
    for sql in (f"SELECT * FROM read_csv('{secret_file}')", f"SELECT * FROM read_parquet('{other}')"):
        result = runner.invoke(app, ["--warehouse", s3_root, "query", sql])
        assert result.exit_code == 1, result.output
    result = runner.invoke(app, ["--warehouse", s3_root, "query", "SELECT count(*) AS n FROM problems",
                                 "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output) == [{"n": 1}], result.output


def test_a_reader_of_a_missing_s3_warehouse_is_refused_and_creates_nothing(s3_root, s3_endpoint):
    result = runner.invoke(app, ["--warehouse", s3_root, "tables"])
    assert result.exit_code == 1 and "no warehouse at" in result.output, result.output
    assert bucket_objects(s3_endpoint, s3_root) == {}
