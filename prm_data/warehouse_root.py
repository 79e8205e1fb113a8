"""What a warehouse root may be: a local folder (or a `file://` URL naming one).

An object-store URL (`s3://bucket/prefix`, `gs://...`, `az://...`) is not supported yet
(issue 20). Before this check, `warehouse: s3://bucket/wh` ran, exited 0 and wrote everything
into a local folder named `s3:`: a user believed the data was in the bucket. Every way a root
reaches the code (a config's `warehouse:`, `prm-data --warehouse`, `PRM_DATA_WAREHOUSE`,
`Warehouse(root)`) goes through `local_root`, which refuses any URL scheme but `file`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
SUPPORTED_SCHEMES = ("file",)


class UnsupportedWarehouseRoot(ValueError):
    """A warehouse root that names storage this version cannot write to."""


def local_root(root: str | os.PathLike) -> Path:
    """The local folder `root` names; a URL with any scheme but `file://` is refused."""
    text = os.fspath(root)
    match = _URL.match(text)
    if match is None:
        return Path(text)
    scheme = match["scheme"].lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedWarehouseRoot(
            f"warehouse {text!r}: the {scheme}:// scheme is not supported (object storage is issue 20); "
            "give a local folder or a file:// URL. Nothing was written.")
    parsed = urlparse(text)
    if parsed.netloc not in ("", "localhost"):
        raise UnsupportedWarehouseRoot(
            f"warehouse {text!r}: a file:// URL must name a local path (file:///abs/path), not host "
            f"{parsed.netloc!r}. Nothing was written.")
    return Path(unquote(parsed.path))
