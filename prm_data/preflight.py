"""Permanent errors: found before a run spends anything, and never retried.

A missing package or model file, a config that cannot work, or a server that
refuses our key (HTTP 401/403) fails the same way on every retry: retrying it
costs minutes and prints a traceback per attempt. Transient errors (timeouts,
connection resets, 429, 5xx) are the only ones worth retrying, and the LLM
client and the flow's task retries keep doing so.

`check_backends(config)` looks at every backend the config's labelers will use
(packages importable, model files present, the key accepted by an
OpenAI-compatible server) and raises `PermanentError` with one line naming the
fix; `check_source(config)` does the same for the problem source (a missing
file, a bad bank spec) and `check_warehouse(config)` for an object store that
refuses our credentials. `permanent_reason(exc)` classifies an exception raised later, so a retry
policy can skip retrying it and a command can print that one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

AUTH_STATUSES = (401, 403)
PACKAGES = {"local": ("torch", "transformers"), "vllm": ("vllm",), "openai": ("openai",)}


class PermanentError(RuntimeError):
    """An error no retry can fix (missing package or file, bad config, refused credentials)."""


def permanent_reason(exc: BaseException) -> str | None:
    """One line saying why `exc` is permanent, or None when it may be transient (worth a retry)."""
    from pydantic import ValidationError

    from prm_data.llm.types import BackendError
    from prm_data.sources.files import SourceError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # also look through `raise ... from`
        seen.add(id(exc))
        if isinstance(exc, PermanentError):
            return str(exc)
        if isinstance(exc, SourceError) and not _network_error(exc):  # a missing or unreadable file, a bad spec
            return f"the problem source cannot be read: {exc}"
        if isinstance(exc, ModuleNotFoundError):
            return f"missing package {exc.name!r}: pip install it (or pick another backend kind)"
        if isinstance(exc, ImportError):
            return f"cannot import: {exc}"
        if is_access_error(exc) and not isinstance(exc, PermissionError):
            return f"the object store refused us: {access_reason(exc)}"
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
            return f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ValidationError):
            return f"bad config: {' '.join(str(exc).split())[:300]}"
        if type(exc).__name__ == "LocalModelUnavailable":
            return str(exc)
        if isinstance(exc, BackendError) and not exc.retryable and any(f"HTTP {s}" in str(exc) for s in AUTH_STATUSES):
            return f"the server refused the credentials: {exc}"
        exc = exc.__cause__ or exc.__context__
    return None


_NETWORK_MODULES = ("requests", "httpx", "httpcore", "urllib3", "aiohttp", "urllib")


def _network_error(exc: BaseException) -> bool:
    """Whether `exc` was caused by the network (a hub that did not answer may answer on a retry)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__module__.split(".")[0] in _NETWORK_MODULES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _roles(config) -> dict[str, object]:
    """The backends this config's labelers will call, by role (their registry entries' `needs`)."""
    labeling = config.labeling
    roles = {"policy": config.policy}
    if labeling.needs("completer"):
        roles["completer"] = config.completer_backend
    if labeling.needs("prover"):
        roles["prover"] = config.prover_backend
    if labeling.needs("judges"):
        for spec in config.labeling.judge_vote.judges:
            if spec.name not in config.judges:
                raise PermanentError(f"judge_vote names judge {spec.name!r} but `judges` has only "
                                     f"{', '.join(sorted(config.judges)) or 'none'}")
            roles[f"judge {spec.name}"] = config.judges[spec.name]
    return roles


def _check_local(role: str, backend) -> None:
    """The local model's file: a bundled model (by name, or the default) assembled and verified, or a path."""
    from prm_data.llm.model_files import BUNDLED, DEFAULT_MODEL, ModelFileError, bundled_model_file

    path = backend.local.model_path
    if path is not None and str(path) not in BUNDLED:
        if not Path(path).exists():
            raise PermanentError(f"{role}: local model file {path} does not exist (local.model_path; bundled "
                                 f"models: {', '.join(sorted(BUNDLED))})")
        return
    try:
        bundled_model_file(str(path) if path else DEFAULT_MODEL)
    except ModelFileError as exc:
        raise PermanentError(f"{role}: {exc}") from None


def _check_openai_auth(role: str, backend, timeout_s: float = 5.0) -> None:
    """GET /models with the configured key: 401/403 is permanent; anything else is left to the retries."""
    key = os.environ.get(backend.api_key_env) if backend.api_key_env else None
    for url in backend.base_urls:
        request = urllib.request.Request(url.rstrip("/") + "/models",
                                         headers={"Authorization": f"Bearer {key or 'EMPTY'}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code in AUTH_STATUSES:
                where = f"${backend.api_key_env}" if backend.api_key_env else "no key (api_key_env is unset)"
                state = "is not set" if backend.api_key_env and not key else "was refused"
                raise PermanentError(f"{role}: {url} answered HTTP {exc.code}: the API key from {where} {state}"
                                     ) from None
        except (OSError, ValueError, json.JSONDecodeError):
            pass  # unreachable or odd right now: transient, the client retries it


def check_source(config) -> None:
    """Raise `PermanentError` if the run's problem source cannot be read at all (`sources.check_source`)."""
    from prm_data.sources import SourceError, check_source as check_spec

    try:
        check_spec(config.problems.source)
    except SourceError as exc:
        raise PermanentError(f"the problem source cannot be read: {exc}") from None


def check_warehouse(config) -> None:
    """Raise `PermanentError` if the run's object store refuses us (no credentials, a denied key): one request."""
    from prm_data.warehouse_root import parse_root

    root = parse_root(config.warehouse)
    if not isinstance(root, str):
        return
    from prm_data.storage.object_warehouse import warehouse_exists

    try:
        warehouse_exists(root)
    except Exception as exc:
        if is_access_error(exc):
            raise PermanentError(f"cannot open the warehouse at {root}: {access_reason(exc)}") from None
        raise


def is_access_error(exc: BaseException) -> bool:
    """Whether an object store refused us for who we are: no credentials found, or credentials denied."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, PermissionError) or any(
        word in name for name in names for word in ("Credential", "Authentication", "AccessDenied"))


def access_reason(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (credentials come from the environment: "
            'docs/warehouse.md, "Object storage")')


def check_backends(config, check_auth: bool = True) -> None:
    """Raise `PermanentError` (one line, with the fix) if a backend the run needs cannot work at all."""
    for role, backend in _roles(config).items():
        for package in PACKAGES.get(backend.kind, ()):
            if importlib.util.find_spec(package) is None:
                raise PermanentError(f"{role}: kind={backend.kind} needs the package `{package}`: pip install "
                                     f"{package} (or pick another backend kind)")
        if backend.kind == "local":
            _check_local(role, backend)
        elif backend.kind in ("openai", "vllm") and not backend.model:
            raise PermanentError(f"{role}: kind={backend.kind} needs `model` (the served model name or path)")
        if backend.kind == "openai":
            if not backend.base_urls:
                raise PermanentError(f"{role}: kind=openai needs base_urls (e.g. http://127.0.0.1:8000/v1)")
            if check_auth:
                _check_openai_auth(role, backend)
