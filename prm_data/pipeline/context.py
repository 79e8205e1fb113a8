"""Per-process access to what stages need: the warehouse and model clients.

Clients are cached per process by (role, backend config), so a local model is
loaded once however many shards a worker processes, and every client writes
through the warehouse's request cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from prm_data.config import RunConfig
from prm_data.failures import FailureLog
from prm_data.llm.client import LLMClient
from prm_data.llm.factory import BackendConfig, make_client
from prm_data.warehouse import Warehouse

_CLIENTS: dict[tuple, LLMClient] = {}
_LOCK = threading.Lock()


@dataclass
class StageContext:
    config: RunConfig
    run_id: str
    failures: FailureLog = field(init=False)

    def __post_init__(self):
        self.warehouse = Warehouse(self.config.warehouse)
        self.failures = FailureLog(self.run_id)

    def client(self, role: str, backend: BackendConfig) -> LLMClient:
        """The cached client for a role; its failures go to this stage's failure log."""
        key = (str(self.warehouse.root), self.run_id, role, backend.model_dump_json())
        with _LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                client = make_client(backend, self.warehouse, self.run_id)
                _CLIENTS[key] = client
        client.failures = self.failures
        return client

    def policy(self) -> LLMClient:
        return self.client("policy", self.config.policy)

    def completer(self) -> LLMClient:
        return self.client("completer", self.config.completer_backend)

    def prover(self) -> LLMClient:
        return self.client("prover", self.config.prover_backend)

    def judges(self) -> dict[str, LLMClient]:
        names = [j.name for j in self.config.labeling.judge_vote.judges]
        return {n: self.client(f"judge:{n}", self.config.judges[n]) for n in names}

    def flush(self, stage_shard: str) -> None:
        """Persist this stage's failures and every cached answer it got."""
        self.failures.flush(self.warehouse, stage_shard)
        for client in list(_CLIENTS.values()):
            cache = getattr(client, "cache", None)
            if cache is not None and hasattr(cache, "flush"):
                cache.flush()


def usage_totals() -> dict[str, dict]:
    """Per purpose usage summed over every client of this process."""
    out: dict[str, dict] = {}
    for client in list(_CLIENTS.values()):
        for purpose, u in client.stats.by_purpose.items():
            acc = out.setdefault(purpose, {k: 0 for k in vars(u)})
            for k, v in vars(u).items():
                acc[k] += v
    return out


def reset_clients() -> None:
    """Forget cached clients (tests, or a config change within one process)."""
    with _LOCK:
        _CLIENTS.clear()
