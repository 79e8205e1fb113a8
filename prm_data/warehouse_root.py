"""What a warehouse root may be: a local folder (or a `file://` URL naming one), or an object-store URL.

`s3://bucket/prefix`, `gs://bucket/prefix` (`gcs://` is read as `gs://`) and `az://container/prefix`
(the storage account from the environment) are object-store warehouses (prm_data/storage/,
docs/warehouse.md, "Object storage"). Every other scheme (`abfss://`, `hdfs://`, ...) is refused
with the reason before anything is written: before this check, `warehouse: s3://bucket/wh` ran, exited
0 and wrote everything into a local folder named `s3:`, so a user believed the data was in the
bucket. Every way a root reaches the code (a config's `warehouse:`, `prm-data --warehouse`,
`PRM_DATA_WAREHOUSE`, `open_warehouse(root)`) goes through `parse_root`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
OBJECT_SCHEMES = ("s3", "gs", "az")
SUPPORTED_SCHEMES = ("file", *OBJECT_SCHEMES)
_ALIASES = {"gcs": "gs"}  # gcsfs's second protocol name; one spelling keeps one warehouse one URL
# adlfs's other spellings: abfs[s]://container@account.dfs.core.windows.net names the account in the
# URL, which is then stored in every table; the account comes from the environment instead
_SPELL_AS = {"abfs": "az://<container>/<prefix>", "abfss": "az://<container>/<prefix>",
             "s3a": "s3://<bucket>/<prefix>"}
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS, gcloud's default credentials, the metadata server",
    "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, "
          "AZURE_STORAGE_SAS_TOKEN or a service principal",
}


class UnsupportedWarehouseRoot(ValueError):
    """A warehouse root that names storage this version cannot write to."""


def scheme_of(root: str | os.PathLike) -> str | None:
    """The URL scheme of `root`, lower case (None for a plain path)."""
    match = _URL.match(os.fspath(root))
    return match["scheme"].lower() if match else None


def is_object_url(root: str | os.PathLike | None) -> bool:
    return root is not None and _ALIASES.get(scheme_of(root), scheme_of(root)) in OBJECT_SCHEMES


def object_url(root: str) -> str:
    """The normalized form of an object-store root: `s3://bucket/prefix` (gs://, az://), no trailing slash.

    Refused: a URL without a bucket, with credentials or a port in it (credentials come from
    the environment only, so they are never written into a config, a table or a log), a query
    string or a fragment.
    """
    text = os.fspath(root)
    parsed = urlparse(text)
    scheme = _ALIASES.get(parsed.scheme.lower(), parsed.scheme.lower())
    if parsed.username or parsed.password or "@" in parsed.netloc:
        raise UnsupportedWarehouseRoot(
            f"warehouse {scheme}://{parsed.hostname or ''}...: credentials do not belong in the URL; set them "
            f"in the environment ({CREDENTIALS.get(scheme, CREDENTIALS['s3'])}). Nothing was written.")
    if not parsed.netloc or ":" in parsed.netloc:
        raise UnsupportedWarehouseRoot(f"warehouse {text!r}: give {scheme}://<bucket>/<prefix>. Nothing was written.")
    if parsed.query or parsed.fragment or parsed.params:
        raise UnsupportedWarehouseRoot(f"warehouse {text!r}: no query string or fragment. Nothing was written.")
    prefix = parsed.path.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise UnsupportedWarehouseRoot(f"warehouse {text!r}: empty, '.' or '..' path parts. Nothing was written.")
    return f"{scheme}://{parsed.netloc}" + (f"/{prefix}" if prefix else "")


def parse_root(root: str | os.PathLike) -> Path | str:
    """A local root as a Path, an object-store root as its normalized URL; anything else refused."""
    text = os.fspath(root)
    scheme = scheme_of(text)
    if scheme is None:
        return Path(text)
    if _ALIASES.get(scheme, scheme) in OBJECT_SCHEMES:
        return object_url(text)
    return local_root(text)


def local_root(root: str | os.PathLike) -> Path:
    """The local folder `root` names; an object-store URL or any scheme but `file://` is refused."""
    text = os.fspath(root)
    scheme = scheme_of(text)
    if scheme is None:
        return Path(text)
    if _ALIASES.get(scheme, scheme) in OBJECT_SCHEMES:
        raise UnsupportedWarehouseRoot(f"warehouse {text!r} is an object store; Warehouse() is the local kind: "
                                       "open it with prm_data.warehouses.open_warehouse")
    if scheme not in SUPPORTED_SCHEMES:
        extra = f" (write it as {_SPELL_AS[scheme]}, the account from the environment)" if scheme in _SPELL_AS else ""
        raise UnsupportedWarehouseRoot(
            f"warehouse {text!r}: the {scheme}:// scheme is not supported{extra}; give a local folder, a file:// "
            "URL, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix. Nothing was written.")
    parsed = urlparse(text)
    if parsed.netloc not in ("", "localhost"):
        raise UnsupportedWarehouseRoot(
            f"warehouse {text!r}: a file:// URL must name a local path (file:///abs/path), not host "
            f"{parsed.netloc!r}. Nothing was written.")
    return Path(unquote(parsed.path))
