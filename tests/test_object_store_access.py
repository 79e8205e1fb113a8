"""An object store that finds no credentials is one line, for every verb that opens the warehouse, and
nothing is written: run as the user types it (`prm-data ...` in a real process) against moto's S3 server
on 127.0.0.1 (tests/s3_support.py), with every AWS credential taken out of the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3_support import bucket_objects, s3_endpoint, s3_root  # noqa: F401 (fixtures)

pytestmark = pytest.mark.network

CLI = Path(sys.executable).with_name("prm-data")
SIM = Path(__file__).resolve().parents[1] / "configs" / "sim.yaml"


@pytest.mark.parametrize("verb", [["tables"], ["problems", "add", "bank:2"], ["run", "-c", str(SIM)],
                                  ["run", "-c", str(SIM), "--serial"]])
def test_no_credentials_is_one_line_and_writes_nothing(s3_endpoint, s3_root, tmp_path, verb):
    if not CLI.exists():
        pytest.skip("console script not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_EC2_METADATA_DISABLED": "true",  # no instance role to ask
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run([str(CLI), "--warehouse", s3_root, *verb], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr
    assert lines[0].startswith("error: ") and f"cannot open the warehouse at {s3_root}: NoCredentialsError" in lines[0]
    assert "docs/warehouse.md" in lines[0]
    assert bucket_objects(s3_endpoint, s3_root) == {}
