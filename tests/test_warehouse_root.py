"""A warehouse root is a local folder or a file:// URL; object-store URLs are refused, not
silently written to a local folder named `s3:` (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.config import RunConfig
from prm_data.warehouse import Warehouse
from prm_data.warehouse_root import UnsupportedWarehouseRoot, local_root

runner = CliRunner()
OBJECT_STORE_URLS = ["s3://bucket/wh", "gs://bucket/wh", "az://container/wh", "S3://Bucket/wh", "hdfs://nn/wh"]


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
    result = runner.invoke(app, ["--warehouse", "s3://bucket/wh", *args])
    assert result.exit_code == 2, result.output
    assert "s3:// scheme is not supported" in result.output
    assert files_under(tmp_path) == []


def test_the_environment_variable_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRM_DATA_WAREHOUSE", "gs://bucket/wh")
    result = runner.invoke(app, ["tables"])
    assert result.exit_code == 2, result.output
    assert "gs:// scheme is not supported" in result.output
    assert files_under(tmp_path) == []


def test_prm_data_run_with_an_object_store_warehouse_exits_2_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs" / "sim.yaml"
    data = yaml.safe_load(config.read_text())
    data["warehouse"] = "s3://bucket/wh"
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["run", "-c", str(path), "--serial"])
    assert result.exit_code == 2, result.output
    assert "scheme is not supported" in result.output
    assert files_under(tmp_path) == [path]
