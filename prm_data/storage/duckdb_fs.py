"""What DuckDB reads an object-store warehouse through.

DuckDB's Python API registers an fsspec filesystem (`con.register_filesystem(fs)`) and sends
every path of its protocols (`s3://`; `gs://`, `gcs://`; `az://`, `abfs://`) there. That is how
prm-data reads an object store offline, on all three stores alike: DuckDB's own `httpfs` (S3, GCS
through its S3 interoperability API) and `azure` extensions are not in the wheel and are downloaded
on first use, which an offline machine cannot do; and the same fsspec filesystem the writers use
carries the credentials chain, the request counts and the immutable keys' metadata cache
(roots.py) into every read.

`read_only_filesystem(fs, prefix)` is what `prm-data query` registers: reads only, and only of
keys under `prefix` (the warehouse's `tables/`), so a query cannot read another bucket the
credentials reach, nor write anywhere. (`enable_external_access = false`, which confines a
local warehouse's queries, disables registered filesystems too; `disabled_filesystems =
'LocalFileSystem'` stops local reads instead.)
"""

from __future__ import annotations

import posixpath

from fsspec import AbstractFileSystem


class ReadOnlyPrefixFileSystem(AbstractFileSystem):
    """A read-only view of `fs` confined to the keys under `prefix` (`bucket/path/`)."""

    protocol = ("s3", "s3a")  # replaced per instance by the wrapped filesystem's protocols

    def __init__(self, fs, prefix: str):
        super().__init__(skip_instance_cache=True)
        self.fs = fs
        self.protocol = fs.protocol
        self.prefix = prefix.rstrip("/") + "/"

    def _check(self, path: str) -> str:
        stripped = posixpath.normpath(self.fs._strip_protocol(path))
        if not (stripped + "/").startswith(self.prefix):
            raise PermissionError(f"{path}: outside the warehouse ({self.prefix}); a query reads only the warehouse")
        return stripped

    def _open(self, path, mode="rb", **kwargs):
        if "r" not in mode or any(c in mode for c in "wax+"):
            raise PermissionError(f"{path}: a query opens files for reading only")
        return self.fs.open(self._check(path), mode, **kwargs)

    def info(self, path, **kwargs):
        return self.fs.info(self._check(path), **kwargs)

    def ls(self, path, detail=True, **kwargs):
        return self.fs.ls(self._check(path), detail=detail, **kwargs)

    def glob(self, path, **kwargs):
        return self.fs.glob(self._check(path), **kwargs)

    def find(self, path, *args, **kwargs):
        return self.fs.find(self._check(path), *args, **kwargs)

    def exists(self, path, **kwargs):
        return self.fs.exists(self._check(path), **kwargs)

    def modified(self, path):
        return self.fs.modified(self._check(path))

    def _refuse(self, *args, **kwargs):
        raise PermissionError("a query cannot write to the warehouse")

    rm = rm_file = mkdir = makedirs = mv = cp_file = pipe_file = put_file = touch = rmdir = _refuse


def read_only_filesystem(fs, prefix: str) -> ReadOnlyPrefixFileSystem:
    return ReadOnlyPrefixFileSystem(fs, prefix)
