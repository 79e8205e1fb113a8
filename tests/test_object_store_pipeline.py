"""`warehouse: s3://...` runs the whole pipeline, and every CLI command that opens the warehouse,
against a real S3-compatible server on 127.0.0.1 (moto's, tests/s3_support.py) with the same rows as
a local run (issue 20). One sim run into the bucket serves the module's tests.

The sim config is configs/sim.yaml with a smaller bank (4 problems, 4 rollouts each), run serially,
once on a local folder and once on the server; only the warehouse differs. (Every stage runs
at any bank size: a bigger one costs test time, not coverage.)
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.pipeline.serial import run_serial
from prm_data.warehouses import open_warehouse
from s3_support import S3_ENV, SECRET, _start_server, bucket_objects, s3_endpoint, s3_root  # noqa: F401 (fixtures)
from test_executors import sim_yaml, table_contents

runner = CliRunner()


def small_sim(root: Path, warehouse: str | None = None):
    config = sim_yaml(root, problems={"source": "bank:4:3:0"}, rollouts={"n": 4})
    return config.model_copy(update={"warehouse": warehouse}) if warehouse else config


@pytest.fixture(scope="module")
def sim_on_s3(tmp_path_factory):
    """(root, config, endpoint, folder): the small sim run once into a bucket of its own, for this module's tests."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import boto3

    endpoint = _start_server()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            patch.setenv(key, value)
        folder = tmp_path_factory.mktemp("sim-s3")
        patch.setenv("PRM_DATA_LOCAL_STATE", str(folder / "local-state"))
        bucket = "prm-" + uuid.uuid4().hex[:16]
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        root = f"s3://{bucket}/wh"
        config = small_sim(folder / "run", warehouse=root)
        summary = run_serial(config)
        yield root, config, endpoint, folder, summary


def export_tables(folder: Path) -> dict[str, list[dict]]:
    return {str(p.relative_to(folder)): pq.read_table(p).to_pylist() for p in sorted(folder.rglob("*.parquet"))}


def test_the_sim_pipeline_on_s3_writes_the_same_rows_as_on_a_local_folder(small_sim_local_run, sim_on_s3, tmp_path):
    s3_root, s3_config, s3_endpoint, folder, s3_summary = sim_on_s3
    local_config, local_summary = small_sim_local_run
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
    assert not list(folder.rglob("s3:*"))

    # the secret key in the environment appears in no object of the bucket and no file the run wrote
    needle = SECRET.encode()
    assert not [k for k, body in keys.items() if needle in body or SECRET in k]
    assert not [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]

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


# ----------------------------------------------------------------------------- every command on the bucket
# Covered above or elsewhere on the bucket: `run` (tests/test_object_store_crash.py, the real CLI killed and
# rerun), `tables`, `query`, `export` (above, and on gs:// and az:// in tests/test_object_store_clouds.py).
# `train`, `judge-check` and `serve-sim` never open the warehouse (train reads an export folder or a Hub
# repo); `schedule` hands `run`'s config to the same flow under a Prefect server
# (tests/test_schedule_served.py runs it on a local folder).
def invoke(root: str, *args: str):
    result = runner.invoke(app, ["--warehouse", root, *args])
    assert SECRET not in result.output
    return result


def test_problems_add_writes_into_the_bucket_and_a_rerun_adds_nothing(sim_on_s3):
    root, _, endpoint, _, _ = sim_on_s3
    fresh = root.rsplit("/", 1)[0] + "/problems-only"
    first = invoke(fresh, "problems", "add", "bank:3:2:9")
    assert first.exit_code == 0 and "added 3 problems" in first.output, first.output
    again = invoke(fresh, "problems", "add", "bank:3:2:9")
    assert again.exit_code == 0 and "added 0 problems, 3 already in the warehouse" in again.output, again.output
    warehouse = open_warehouse(fresh)
    assert warehouse.scalar("SELECT count(*) FROM problems") == 3
    assert warehouse.scalar("SELECT count(*) FROM runs WHERE flow = 'problems add'") == 2
    assert any(k.startswith("problems-only/tables/problems/") for k in bucket_objects(endpoint, fresh))


def test_report_plots_the_buckets_runs(sim_on_s3, tmp_path):
    root, _, _, _, _ = sim_on_s3
    result = invoke(root, "report", "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data and sorted(p.suffix for p in (tmp_path / "report").iterdir()).count(".png") >= 3
    assert str(open_warehouse(root).scalar("SELECT count(*) FROM step_labels")) in json.dumps(data)


def test_eval_of_the_export_reads_the_buckets_labels_and_writes_eval_results_there(sim_on_s3):
    root, config, _, _, _ = sim_on_s3
    result = invoke(root, "eval", "-d", config.export.out_dir, "--split", "all", "-s", "labeler:mc_value",
                    "--no-rerank", "--run-id", "eval-on-s3")
    assert result.exit_code == 0, result.output
    rows = open_warehouse(root).rows("SELECT evaluated, metric, n FROM eval_results WHERE run_id = 'eval-on-s3'")
    assert rows and {r["evaluated"] for r in rows} == {"labeler:mc_value"} and all(r["n"] > 0 for r in rows)


def test_eval_of_an_outside_set_labels_it_into_the_bucket(sim_on_s3, tmp_path):
    root, _, _, _, _ = sim_on_s3
    outside = tmp_path / "outside.jsonl"
    outside.write_text("\n".join(json.dumps({"problem": f"What is {a} + {a}?", "steps": [f"{a} + {a} = {2 * a}."],
                                             "label": -1}) for a in (2, 3)) + "\n")
    result = invoke(root, "eval", "-d", str(outside), "-s", "labeler:tool_verify", "--run-id", "eval-outside")
    assert result.exit_code == 0, result.output
    warehouse = open_warehouse(root)
    assert warehouse.scalar("SELECT count(*) FROM eval_results WHERE run_id = 'eval-outside'") > 0
    assert warehouse.scalar("SELECT count(*) FROM step_labels WHERE run_id = 'eval-outside'") == 2


def test_a_reader_given_a_missing_prefix_is_refused_and_creates_nothing(sim_on_s3, tmp_path):
    root, config, endpoint, _, _ = sim_on_s3
    missing = root.rsplit("/", 1)[0] + "/typo"
    before = bucket_objects(endpoint, root)
    for args in (["report", "--out", str(tmp_path / "r")], ["eval", "-d", config.export.out_dir, "-s",
                                                             "labeler:mc_value"], ["tables"], ["export", "--out",
                                                                                               str(tmp_path / "e")]):
        result = invoke(missing, *args)
        assert result.exit_code == 1 and "no warehouse at s3://" in result.output, (args, result.output)
    assert bucket_objects(endpoint, root) == before
