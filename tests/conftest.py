"""Shared fixtures.

Prefect reads its settings when it is first imported, so this file sets them
before any test module can import it: a throwaway PREFECT_HOME for the whole
session (task results persisted by the flows land there, never in the
project's `.prefect/`), then `flows.prefect_env` (telemetry off, a startup
timeout a loaded 2-core machine can meet).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Under pytest-xdist (`-n N`) each worker, and every process it starts, gets its share of the cores:
# torch's default of one thread per core in each of N workers oversubscribes them (a training test
# took many times longer). Set before anything imports torch.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

_PREFECT_HOME = tempfile.mkdtemp(prefix="prm-data-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, True)

from flows import prefect_env  # noqa: E402  (after PREFECT_HOME, before anything imports prefect)

prefect_env.configure()


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server (temporary SQLite database) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):  # None: PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
        yield


@pytest.fixture(scope="session")
def small_sim_local_run(tmp_path_factory):
    """(config, summary): the small sim (tests/test_object_store_pipeline.py's `small_sim`) run once on a
    local folder, what every object-store run (s3://, gs://, az://) is compared with."""
    from prm_data.pipeline.serial import run_serial
    from test_object_store_pipeline import small_sim

    config = small_sim(tmp_path_factory.mktemp("local-sim"))
    return config, run_serial(config)
