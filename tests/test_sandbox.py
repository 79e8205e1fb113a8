"""The code sandbox against hostile code: no network, no writes outside, limits enforced."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from prm_data.labelers.sandbox import SandboxConfig, namespace_prefix, run_python

REPO = Path(__file__).resolve().parents[1]
ISOLATIONS = ["audit"] + (["namespace"] if namespace_prefix() is not None else [])


@pytest.fixture()
def listener():
    """A TCP server on 127.0.0.1 that this process can reach: the sandbox must not."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue  # poll again until the test is over
            accepted.append(True)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_plain_code_runs_and_its_output_comes_back():
    result = run_python("print(70 + 99 + 70)")
    assert result.status == "ok" and result.stdout.strip() == "239"


def test_the_listener_is_reachable_outside_the_sandbox(listener):
    port, accepted = listener
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    time.sleep(0.2)
    assert accepted == [True]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_network_is_refused_even_to_localhost(listener, isolation):
    port, accepted = listener
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')")
    result = run_python(code, SandboxConfig(network_isolation=isolation))
    assert result.status in ("refused", "error") and "connected" not in result.stdout
    assert accepted == []


@pytest.mark.skipif(namespace_prefix() is None, reason="network namespaces unavailable here")
def test_the_network_namespace_blocks_sockets_even_without_the_audit_hook(listener):
    """`unshare -n` alone (no audit hook in this child): the host's loopback is not there."""
    import subprocess
    import sys

    port, accepted = listener
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
    proc = subprocess.run([*namespace_prefix(), sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0 and "connected" not in proc.stdout
    assert accepted == []


@pytest.mark.parametrize("target", ["/tmp/prm_sandbox_outside.txt", str(REPO / "sandbox_escape.txt")])
def test_writing_outside_the_sandbox_directory_is_refused(target):
    result = run_python(f"open({target!r}, 'w').write('escaped')\nprint('wrote')")
    assert result.status == "refused" and "wrote" not in result.stdout
    assert not Path(target).exists()


@pytest.mark.parametrize("code", [
    "import os\nos.makedirs('/tmp/prm_sandbox_dir/x')",
    "import os\nos.rename('main.py', '/tmp/prm_sandbox_moved.py')",
    "import os\nfd = os.open('/tmp', os.O_RDONLY)\nos.open('prm_sandbox_fd.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
    "import os\nos.symlink('/tmp/prm_sandbox_link_target', 'link')\nopen('link', 'w').write('x')",
    "import subprocess\nsubprocess.run(['touch', '/tmp/prm_sandbox_touched'])",
    "import os\nos.system('touch /tmp/prm_sandbox_touched')",
    "import ctypes\nctypes.CDLL('libc.so.6').system(b'touch /tmp/prm_sandbox_touched')",
])
def test_escape_routes_are_refused(code):
    result = run_python(code)
    assert result.status == "refused", result.stderr
    for leftover in ("/tmp/prm_sandbox_dir", "/tmp/prm_sandbox_moved.py", "/tmp/prm_sandbox_fd.txt",
                     "/tmp/prm_sandbox_link_target", "/tmp/prm_sandbox_touched"):
        assert not Path(leftover).exists()


def test_writing_inside_the_sandbox_directory_works_and_the_directory_is_removed_after():
    code = "import os\nopen('notes.txt', 'w').write('kept')\nprint(os.getcwd())\nprint(open('notes.txt').read())"
    result = run_python(code)
    workdir, content = result.stdout.split()
    assert result.status == "ok" and content == "kept"
    assert not Path(workdir).exists()


@pytest.mark.slow
def test_a_runaway_loop_is_killed_at_the_cpu_limit():
    start = time.monotonic()
    result = run_python("while True:\n    pass", SandboxConfig(cpu_seconds=1, wall_seconds=10))
    assert result.status == "timeout"
    assert time.monotonic() - start < 5


@pytest.mark.slow
def test_a_sleeping_process_is_killed_at_the_wall_limit():
    start = time.monotonic()
    result = run_python("import time\ntime.sleep(60)", SandboxConfig(wall_seconds=1.5))
    assert result.status == "timeout"
    assert time.monotonic() - start < 5


@pytest.mark.slow
def test_a_memory_bomb_hits_the_memory_limit():
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))",
                        SandboxConfig(memory_mb=256, wall_seconds=10))
    assert result.status == "memory"


def test_output_is_capped():
    result = run_python("while True:\n    print('x' * 1000)", SandboxConfig(max_file_bytes=100_000))
    assert result.status == "output_limit"
    assert len(result.stdout) <= SandboxConfig().max_output_chars


def test_libraries_a_solution_would_use_still_import():
    result = run_python("import math, fractions, sympy\nprint(sympy.Rational(1, 3) + fractions.Fraction(2, 3))")
    assert result.status == "ok" and result.stdout.strip() == "1"
