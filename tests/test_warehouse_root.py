"""A warehouse root is a local folder, a file:// URL, s3://, gs:// or az://; other URLs are refused,
not silently written to a local folder named `hdfs:` (issue 20; before, s3:// too, then gs:// and az://)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.config import RunConfig
from prm_data.warehouse import Warehouse
from prm_data.warehouse_root import UnsupportedWarehouseRoot, local_root, parse_root
from prm_data.warehouses import open_warehouse

runner = CliRunner()
OBJECT_STORE_URLS = ["hdfs://nn/wh", "HDFS://nn/wh", "abfs://c/wh", "abfss://c/wh", "ftp://host/wh"]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


@pytest.mark.parametrize("url", OBJECT_STORE_URLS)
def test_a_config_naming_an_object_store_warehouse_is_refused_at_load(url):
    with pytest.raises(ValidationError, match="scheme is not supported"):
        RunConfig(warehouse=url)


@pytest.mark.parametrize("url", OBJECT_STORE_URLS)
def test_the_warehouse_class_refuses_an_object_store_url_and_creates_nothing(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedWarehouseRoot, match=url.split("://")[0]):
        Warehouse(url)
    assert files_under(tmp_path) == []


def test_a_file_url_names_the_local_folder(tmp_path):
    wh = Warehouse(f"file://{tmp_path}/wh")
    assert wh.root == (tmp_path / "wh").resolve()
    assert (tmp_path / "wh" / "tables").is_dir()
    assert local_root("file://localhost/tmp/x%20y") == Path("/tmp/x y")


def test_a_file_url_with_a_remote_host_is_refused():
    with pytest.raises(UnsupportedWarehouseRoot, match="host"):
        local_root("file://fileserver/share/wh")


def test_plain_paths_pass_unchanged():
    assert local_root("warehouse/data") == Path("warehouse/data")
    assert local_root(Path("/abs/wh")) == Path("/abs/wh")
    assert local_root("odd:name/wh") == Path("odd:name/wh")  # a colon without // is a folder name


@pytest.mark.parametrize("args", [["tables"], ["problems", "add", "bank:2"], ["query", "SELECT 1"]])
def test_the_cli_refuses_an_object_store_warehouse_with_exit_code_2_and_writes_nothing(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["--warehouse", "hdfs://nn/wh", *args])
    assert result.exit_code == 2, result.output
    assert "hdfs:// scheme is not supported" in result.output
    assert files_under(tmp_path) == []


def test_the_environment_variable_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRM_DATA_WAREHOUSE", "hdfs://nn/wh")
    result = runner.invoke(app, ["tables"])
    assert result.exit_code == 2, result.output
    assert "hdfs:// scheme is not supported" in result.output
    assert files_under(tmp_path) == []


def test_prm_data_run_with_an_object_store_warehouse_exits_2_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs" / "sim.yaml"
    data = yaml.safe_load(config.read_text())
    data["warehouse"] = "abfss://container@account.dfs.core.windows.net/wh"
    path = tmp_path / "abfss.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["run", "-c", str(path), "--serial"])
    assert result.exit_code == 2, result.output
    assert "scheme is not supported" in result.output
    assert files_under(tmp_path) == [path]


@pytest.mark.parametrize("url, normalized", [("s3://bucket/wh", "s3://bucket/wh"), ("S3://bucket/a/b/", "s3://bucket/a/b"),
                                             ("s3://bucket", "s3://bucket"), ("gs://bucket/wh/", "gs://bucket/wh"),
                                             ("gcs://bucket/wh", "gs://bucket/wh"), ("AZ://container/wh", "az://container/wh")])
def test_an_object_store_url_is_accepted_in_a_config_and_normalized(url, normalized):
    assert RunConfig(warehouse=url).warehouse == url
    assert parse_root(url) == normalized


@pytest.mark.parametrize("url, reason", [("s3://key:secret@bucket/wh", "credentials do not belong in the URL"),
                                         ("s3:///wh", "give s3://<bucket>"), ("s3://bucket/a/../b", "'..'"),
                                         ("s3://bucket/wh?versionId=1", "no query string"),
                                         ("gs://token:secret@bucket/wh", "GOOGLE_APPLICATION_CREDENTIALS"),
                                         ("az://account:secret@container/wh", "AZURE_STORAGE_CONNECTION_STRING")])
def test_a_bad_s3_url_is_refused_with_the_reason_and_never_echoes_a_secret(url, reason, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedWarehouseRoot, match=re.escape(reason)) as err:
        open_warehouse(url)
    assert "secret" not in str(err.value)  # the refusal never echoes the URL's credentials
    result = runner.invoke(app, ["--warehouse", url, "tables"])
    assert result.exit_code == 2 and "secret" not in result.output, result.output
    assert files_under(tmp_path) == []


def test_an_abfss_url_is_refused_with_the_az_spelling_that_keeps_the_account_out_of_the_tables():
    with pytest.raises(UnsupportedWarehouseRoot, match=re.escape("az://<container>/<prefix>")):
        parse_root("abfss://container@account.dfs.core.windows.net/wh")
