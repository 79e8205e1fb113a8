"""A disk that fills up mid-run: `prm-data run` stops with one line saying so and keeps no half-written
file; freed, the same command resumes to exactly the tables of a run that never ran out of space.

The warehouse lives on a 3 MB tmpfs mounted in a private mount namespace (`unshare --user
--map-root-user --mount`, no privilege needed), which the sim config fills during generation; the
rerun happens after the tmpfs is remounted larger, in the same namespace. The uninterrupted run is
the same config on the ordinary disk.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prm_data.warehouse import Warehouse
from reliability_support import CONTENT_TABLES, duplicate_keys, table_snapshot

pytestmark = pytest.mark.slow

SIM = Path(__file__).resolve().parents[1] / "configs" / "sim.yaml"
CLI = [sys.executable, "-m", "prm_data.cli"]


def _can_mount_a_tmpfs(folder: Path) -> bool:
    """Whether this user may mount a tmpfs in a private mount namespace (not in every container)."""
    if shutil.which("unshare") is None:
        return False
    folder.mkdir()
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "-o",
                           "size=1m", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_stops_the_run_in_one_line_and_the_rerun_after_freeing_space_resumes(tmp_path):
    if not _can_mount_a_tmpfs(tmp_path / "probe"):
        pytest.skip("no tmpfs can be mounted here (unshare --user --map-root-user --mount)")
    run = lambda root: [*CLI, "--warehouse", str(root), "run", "-c", str(SIM), "--serial"]  # noqa: E731
    base = subprocess.run(run(tmp_path / "base"), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert base.returncode == 0, base.stderr[-2000:]

    mount, kept = tmp_path / "small-disk", tmp_path / "kept"
    mount.mkdir()
    root = mount / "wh"
    script = f"""
set -u
mount -t tmpfs -o size=3m tmpfs {mount} || exit 3
{shlex.join(run(root))} > {tmp_path}/full.out 2> {tmp_path}/full.err
echo $? > {tmp_path}/full.rc
find {mount} -name '*.tmp' > {tmp_path}/left.txt
mount -o remount,size=200m {mount}
{shlex.join(run(root))} > {tmp_path}/rerun.out 2> {tmp_path}/rerun.err
echo $? > {tmp_path}/rerun.rc
cp -a {root} {kept}
"""
    subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script], cwd=tmp_path,
                   check=True, timeout=600)
    errors = [line for line in (tmp_path / "full.err").read_text().splitlines() if line.startswith("error: ")]
    assert (tmp_path / "full.rc").read_text().strip() == "1"
    assert errors == [line for line in errors if "no space left on the disk of the warehouse" in line] != []
    assert "Traceback" not in (tmp_path / "full.err").read_text()
    assert (tmp_path / "left.txt").read_text() == ""  # no temporary file of a shard write was left behind
    assert (tmp_path / "rerun.rc").read_text().strip() == "0", (tmp_path / "rerun.err").read_text()[-2000:]

    wh, want = Warehouse(kept), Warehouse(tmp_path / "base")
    assert [r["status"] for r in wh.rows("SELECT status FROM runs")] == ["completed"]
    for table in CONTENT_TABLES:
        assert duplicate_keys(wh, table) == [], table
        assert table_snapshot(wh, table) == table_snapshot(want, table), f"{table} differs from the full run"
