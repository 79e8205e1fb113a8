"""Run hostile code in the sandbox and bring back what it saw, attempt by attempt.

`probe(body)` runs `body` through the real `run_python` after a small prelude that
defines `attempt(name, fn)`: each attempt records either what `fn()` returned
(`{"got": ...}`) or the exception the child got (`{"error": "FileNotFoundError",
"errno": 2, ...}`). The child prints that record as one JSON line, which `probe`
parses. Tests then assert on the child's observations: the bytes it read, the
errno the kernel gave it.

`errno` is None for an exception raised by Python code rather than by the kernel
(the old in-process audit hook raised `PermissionError("sandbox refused: ...")`
with no errno): a test that expects a kernel refusal fails on such a record.
"""

from __future__ import annotations

import errno as E
import json
import os
import signal

from prm_data.labelers.sandbox import SandboxConfig, SandboxResult, run_python

PRELUDE = r'''
import json, os, sys
SEEN = {}
def attempt(name, fn):
    try:
        value = fn()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        SEEN[name] = {"got": value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else repr(value)}
    except BaseException as exc:
        SEEN[name] = {"error": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)[:300]}
'''
MARK = "PROBE-RESULT "
POSTLUDE = f"\nprint({MARK!r} + json.dumps(SEEN, default=repr), flush=True)\n"

# What a kernel says when isolation stops an access: no such file (not in the child's
# mount namespace), permission denied, read-only file system, operation not permitted.
DENIED = {E.ENOENT, E.EACCES, E.EROFS, E.EPERM}


class ProbeFailed(AssertionError):
    pass


def probe(body: str, config: SandboxConfig = SandboxConfig()) -> tuple[dict, SandboxResult]:
    """Run PRELUDE + body + POSTLUDE; return (what the child saw, the run's result)."""
    result = run_python(PRELUDE + body + POSTLUDE, config)
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    if not lines:
        raise ProbeFailed(f"the probe printed no result: status={result.status} stderr={result.stderr[-1500:]}")
    return json.loads(lines[-1][len(MARK):]), result


def kernel_refused(seen: dict, allowed: set[int] = DENIED) -> bool:
    """True when the attempt failed with an OS error whose errno is in `allowed`."""
    return "error" in seen and seen.get("errno") in allowed


def processes_with(token: str) -> list[int]:
    """Pids (host view) whose command line contains `token`: leftovers of a sandbox run."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if token.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue  # the process ended while we looked
    return found


def kill_all(pids: list[int]) -> None:
    """Clean up after a failed test so that one failure does not leave a fork bomb behind."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
