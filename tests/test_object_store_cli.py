"""Every `prm-data` command that reads or writes the warehouse, on an s3:// warehouse on moto's S3
server on 127.0.0.1 (tests/s3_support.py), against one sim run shared by the module (issue 20).

Covered elsewhere on the bucket: `run` (tests/test_object_store_crash.py, the real CLI killed and
rerun), `tables`, `query`, `export` (tests/test_object_store_pipeline.py, and on gs:// and az://
in tests/test_object_store_clouds.py). `train`, `judge-check` and `serve-sim` never open the
warehouse (train reads an export folder or a Hub repo); `schedule` hands `run`'s config to the same
flow under a Prefect server (tests/test_schedule_served.py runs it on a local folder).
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.pipeline.serial import run_serial
from prm_data.warehouses import open_warehouse
from s3_support import S3_ENV, SECRET, _start_server, bucket_objects
from test_object_store_pipeline import small_sim

pytestmark = pytest.mark.network
runner = CliRunner()


@pytest.fixture(scope="module")
def sim_on_s3(tmp_path_factory):
    """(root, config, endpoint): the small sim run once, into a bucket of its own."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    endpoint = _start_server()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            patch.setenv(key, value)
        folder = tmp_path_factory.mktemp("cli-s3")
        patch.setenv("PRM_DATA_LOCAL_STATE", str(folder / "local-state"))
        bucket = "prm-" + uuid.uuid4().hex[:16]
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        root = f"s3://{bucket}/wh"
        config = small_sim(folder, warehouse=root)
        run_serial(config)
        yield root, config, endpoint


def invoke(root: str, *args: str):
    result = runner.invoke(app, ["--warehouse", root, *args])
    assert SECRET not in result.output
    return result


def test_problems_add_writes_into_the_bucket_and_a_rerun_adds_nothing(sim_on_s3):
    root, _, endpoint = sim_on_s3
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
    root, _, _ = sim_on_s3
    result = invoke(root, "report", "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data and sorted(p.suffix for p in (tmp_path / "report").iterdir()).count(".png") >= 3
    assert str(open_warehouse(root).scalar("SELECT count(*) FROM step_labels")) in json.dumps(data)


def test_eval_of_the_export_reads_the_buckets_labels_and_writes_eval_results_there(sim_on_s3):
    root, config, _ = sim_on_s3
    result = invoke(root, "eval", "-d", config.export.out_dir, "--split", "all", "-s", "labeler:mc_value",
                    "--no-rerank", "--run-id", "eval-on-s3")
    assert result.exit_code == 0, result.output
    rows = open_warehouse(root).rows("SELECT evaluated, metric, n FROM eval_results WHERE run_id = 'eval-on-s3'")
    assert rows and {r["evaluated"] for r in rows} == {"labeler:mc_value"} and all(r["n"] > 0 for r in rows)


def test_eval_of_an_outside_set_labels_it_into_the_bucket(sim_on_s3, tmp_path):
    root, _, _ = sim_on_s3
    outside = tmp_path / "outside.jsonl"
    outside.write_text("\n".join(json.dumps({"problem": f"What is {a} + {a}?", "steps": [f"{a} + {a} = {2 * a}."],
                                             "label": -1}) for a in (2, 3)) + "\n")
    result = invoke(root, "eval", "-d", str(outside), "-s", "labeler:tool_verify", "--run-id", "eval-outside")
    assert result.exit_code == 0, result.output
    warehouse = open_warehouse(root)
    assert warehouse.scalar("SELECT count(*) FROM eval_results WHERE run_id = 'eval-outside'") > 0
    assert warehouse.scalar("SELECT count(*) FROM step_labels WHERE run_id = 'eval-outside'") == 2


def test_a_reader_given_a_missing_prefix_is_refused_and_creates_nothing(sim_on_s3, tmp_path):
    root, config, endpoint = sim_on_s3
    missing = root.rsplit("/", 1)[0] + "/typo"
    before = bucket_objects(endpoint, root)
    for args in (["report", "--out", str(tmp_path / "r")], ["eval", "-d", config.export.out_dir, "-s",
                                                             "labeler:mc_value"], ["tables"], ["export", "--out",
                                                                                               str(tmp_path / "e")]):
        result = invoke(missing, *args)
        assert result.exit_code == 1 and "no warehouse at s3://" in result.output, (args, result.output)
    assert bucket_objects(endpoint, root) == before
