"""`prm-data serve-sim` serves the synthetic policy over HTTP until interrupted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from prm_data.sources.bank import generate_bank

pytestmark = pytest.mark.network


def test_serve_sim_answers_chat_completions_and_reports_its_counts_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "prm_data.cli", "serve-sim", "--port", "0", "--latency", "0.01"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", line).group(0)
        models = json.load(urllib.request.urlopen(f"{url}/models", timeout=30))
        assert [m["id"] for m in models["data"]] == ["sim-policy", "sim-judge", "sim-coder"]
        question = generate_bank(1, seed=5)[0].question
        body = json.dumps({"model": "sim-policy", "messages": [{"role": "user", "content": question}]}).encode()
        req = urllib.request.Request(f"{url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(req, timeout=30))
        choice = answer["choices"][0]
        assert choice["message"]["content"].startswith("Step 1:") and "true_first_error" in choice["prm_metadata"]
        assert answer["usage"]["completion_tokens"] > 0
    finally:
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 1 requests" in out and "'ok': 1" in out


def test_ctrl_c_stops_serve_sim_even_when_it_was_started_with_sigint_ignored():
    """An `&` job of a non-interactive shell (a CI script, a supervisor) inherits SIGINT ignored."""
    proc = subprocess.Popen([sys.executable, "-m", "prm_data.cli", "serve-sim", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert "serving sim-policy" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 0 requests" in out


def test_serve_sim_refuses_fault_rates_that_add_up_to_more_than_one():
    done = subprocess.run([sys.executable, "-m", "prm_data.cli", "serve-sim", "--port", "0",
                           "--rate-500", "0.7", "--rate-429", "0.6"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "more than 1" in done.stderr
