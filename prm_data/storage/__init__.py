"""The warehouse on object storage (issue 20): an `s3://`, `gs://` or `az://` root shared by
workers on machines that share no disk. Design and guarantees: docs/warehouse.md, "Object storage".

- `roots`: the URL's filesystem (s3fs, gcsfs, adlfs), with credentials from the environment only,
  and the request counts a benchmark reads.
- `commit`: shards written once under content-derived keys, made visible by a marker PUT last.
- `lease`: cross-machine locks (run claims) by conditional writes (`conditional`: each store's own).
- `object_warehouse`: `ObjectWarehouse`, the `Warehouse` over these; `duckdb_fs`: what DuckDB reads through.
"""
