"""The run context: what every stage of one run shares inside one process, built once.

A `RunContext` holds the warehouse, the run id, the labeling version, the
outcome verifiers (configured by the run config's `verifiers:`), the model backends of the run and the clients made from them (one per role and
backend, so a local model is loaded once however many shards a process works
on), and the usage those clients accounted. The serial runner builds one and
passes it to every stage; a Prefect worker process builds one per run the
first time a task of that run reaches it (flows/tasks.py). Stages get the
context plus only their own sub-config, never the whole run config.

Each stage invocation opens a `StageScope`: its own failure log, flushed as
the stage's failures shard with every cached answer, so failure rows are
named after the stage that met them.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from prm_data.failures import FailureLog
from prm_data.labelers.judge_vote import JudgeVoteConfig
from prm_data.labelers.protocol import JudgePanel
from prm_data.llm.client import LLMClient
from prm_data.llm.factory import BackendConfig, make_client
from prm_data.verifiers.registry import Verifiers
from prm_data.warehouse import Warehouse
from prm_data.warehouses import open_warehouse


@dataclass(frozen=True)
class Models:
    """The model backends of a run, by role (`RunConfig.models()`)."""

    policy: BackendConfig
    completer: BackendConfig
    prover: BackendConfig
    judges: Mapping[str, BackendConfig]

    def backend(self, role: str) -> BackendConfig:
        if role.startswith("judge:"):
            return self.judges[role.split(":", 1)[1]]
        return getattr(self, role)


class RunContext:
    """Warehouse, run id, labeling version, clients and usage of one run in this process."""

    def __init__(self, warehouse: Warehouse, run_id: str, labeling_version: str, models: Models,
                 verifiers: Verifiers | None = None):
        self.warehouse = warehouse
        self.verifiers = verifiers if verifiers is not None else Verifiers()  # outcome verifiers, configured
        self.run_id = run_id
        self.labeling_version = labeling_version
        self.models = models
        self.process = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # names this context's usage snapshots
        self._clients: dict[tuple[str, str], LLMClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_run(cls, config, run_id: str) -> "RunContext":
        """The context of `run_id` under a `RunConfig` (the one place a context reads the whole config)."""
        return cls(open_warehouse(config.warehouse), run_id, config.labeling_version(), config.models(),
                   Verifiers(config.verifiers))

    def client(self, role: str) -> LLMClient:
        """The client of a role (policy, completer, prover, judge:<name>), made once per backend."""
        backend = self.models.backend(role)
        key = (role, backend.model_dump_json())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = make_client(backend, self.warehouse, self.run_id)
        return client

    def same_backend(self, a: str, b: str) -> bool:
        return self.models.backend(a) == self.models.backend(b)

    def scope(self, name: str) -> "StageScope":
        return StageScope(self, name)

    def usage(self) -> dict[str, dict]:
        """Per purpose usage summed over every client of this context."""
        out: dict[str, dict] = {}
        for client in list(self._clients.values()):
            for purpose, u in client.stats.by_purpose.items():
                acc = out.setdefault(purpose, {k: 0 for k in vars(u)})
                for k, v in vars(u).items():
                    acc[k] += v
        return out

    def flush_caches(self) -> None:
        for client in list(self._clients.values()):
            cache = getattr(client, "cache", None)
            if cache is not None and hasattr(cache, "flush"):
                cache.flush()


class StageScope:
    """One stage invocation: its failure log, and clients that record into it."""

    def __init__(self, ctx: RunContext, name: str):
        self.ctx, self.name = ctx, name
        self.warehouse, self.run_id = ctx.warehouse, ctx.run_id
        self.failures = FailureLog(ctx.run_id)

    def client(self, role: str) -> LLMClient:
        client = self.ctx.client(role)
        client.failures = self.failures
        return client

    def judges(self, vote: JudgeVoteConfig) -> JudgePanel:
        return JudgePanel({j.name: self.client(f"judge:{j.name}") for j in vote.judges}, vote)

    def flush(self) -> None:
        """Persist this stage's failures and every cached answer it got."""
        self.failures.flush(self.warehouse, self.name)
        self.ctx.flush_caches()


def merge_usage(*usages: Mapping[str, Mapping]) -> dict[str, dict]:
    """Sum per-purpose usage dicts (calls, tokens, cache hits and misses, failures)."""
    out: dict[str, dict] = {}
    for usage in usages:
        for purpose, counts in usage.items():
            acc = out.setdefault(purpose, {})
            for key, value in counts.items():
                acc[key] = acc.get(key, 0) + value
    return out


def latest_usage(snapshots: Mapping[str, Mapping[str, Mapping]], process: str, usage: Mapping) -> None:
    """Keep, per process, the largest of its cumulative usage snapshots (counters only grow)."""
    held = snapshots.setdefault(process, {})
    for purpose, counts in usage.items():
        acc = held.setdefault(purpose, {})
        for key, value in counts.items():
            acc[key] = max(acc.get(key, 0), value)
