"""Open a warehouse by its root: a local folder (`Warehouse`) or an object-store URL (`ObjectWarehouse`).

The one place that knows both kinds. It sits above them in the import graph: `ObjectWarehouse`
subclasses `Warehouse`, so `Warehouse` itself cannot pick its subclass without an import circle.
Code that takes a root from a config, the CLI or `PRM_DATA_WAREHOUSE` opens it here;
`Warehouse(root)` is the local warehouse only, and refuses an object-store URL with the reason.
"""

from __future__ import annotations

import os

from prm_data.storage.object_warehouse import ObjectWarehouse
from prm_data.warehouse import Warehouse, default_root
from prm_data.warehouse_root import is_object_url


def open_warehouse(root: str | os.PathLike | None = None) -> Warehouse:
    """The warehouse at `root` (default: PRM_DATA_WAREHOUSE or warehouse/data), of the kind its root names."""
    chosen = root if root is not None else default_root()
    if is_object_url(chosen):
        return ObjectWarehouse(chosen)
    return Warehouse(chosen)
