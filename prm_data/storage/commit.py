"""The commit protocol of an object-store warehouse (docs/warehouse.md, "Object storage").

A version of shard `<shard>` in folder `tables/<table>/run_id=<run>/` is a pair of objects with
one stem, `<shard>~<gen>~<sha>`:

- `<stem>.parquet`, the data, PUT first, once (the key is new for every write);
- `<stem>.commit`, an empty marker, PUT last: it makes the version visible.

`<sha>` is the first 32 hex digits of the data's SHA-256 (a reader can check what it read);
`<gen>` is a nanosecond clock, greater than every version of the shard the writer saw, plus
4 random hex digits so two writers never choose one key. A key is never written twice, so a
reader that found a version reads the same bytes for its whole query. The current version of
a shard is its committed version with the greatest `<gen>`; after committing, a writer deletes
the shard's other markers at once, and data that the current marker does not name (superseded
versions, uploads killed before their marker) once `GRACE_S` has passed (see `clean_up`); the
end of a run does the same for every shard (`clean_up_all`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

SEP = "~"
GRACE_S = 600.0  # how long data no current marker names is kept (see clean_up)
_VERSION = re.compile(r"^(?P<shard>[A-Za-z0-9_.=-]{1,200})~(?P<gen>\d{19}[0-9a-f]{4})~(?P<sha>[0-9a-f]{32})"
                      r"\.(?P<kind>parquet|commit)$")


@dataclass(frozen=True, order=True)
class Version:
    """One written version of a shard: `folder` (no scheme) holds `<shard>~<gen>~<sha>.{parquet,commit}`."""

    gen: str
    sha: str
    shard: str
    folder: str

    @property
    def stem(self) -> str:
        return f"{self.folder}/{self.shard}{SEP}{self.gen}{SEP}{self.sha}"

    @property
    def data(self) -> str:
        return self.stem + ".parquet"

    @property
    def marker(self) -> str:
        return self.stem + ".commit"


def parse(key: str) -> tuple[Version, str] | None:
    """(version, "parquet" | "commit") for a version's object key, None for any other key."""
    folder, _, name = key.rpartition("/")
    m = _VERSION.match(name)
    if m is None:
        return None
    return Version(m["gen"], m["sha"], m["shard"], folder), m["kind"]


class ShardRef(str):
    """The URL of a committed shard's data object, with the names callers of a local shard's Path use:
    `.stem` is the shard's name, `.name` `<shard>.parquet`, `.parent.name` `run_id=<run>`."""

    def __new__(cls, url: str, shard: str, folder_name: str):
        ref = super().__new__(cls, url)
        ref.stem, ref.name, ref.parent = shard, f"{shard}.parquet", _Folder(folder_name)
        return ref

    def __reduce__(self):  # task results are pickled (Prefect, Dask): keep the names
        return ShardRef, (str(self), self.stem, self.parent.name)


@dataclass(frozen=True)
class _Folder:
    name: str


def current_versions(keys) -> dict[tuple[str, str], Version]:
    """(folder, shard) -> the current committed version, from a listing's keys."""
    current: dict[tuple[str, str], Version] = {}
    for key in keys:
        parsed = parse(key)
        if parsed is None or parsed[1] != "commit":
            continue
        version = parsed[0]
        slot = (version.folder, version.shard)
        if slot not in current or current[slot] < version:
            current[slot] = version
    return current


def shard_objects(fs, folder: str, shard: str) -> dict[str, dict]:
    """Every object of shard `shard` in `folder` (one LIST request), key -> info."""
    try:
        return fs.find(folder, prefix=f"{shard}{SEP}", detail=True)
    except FileNotFoundError:
        return {}


def current_version(fs, folder: str, shard: str) -> Version | None:
    return current_versions(shard_objects(fs, folder, shard)).get((folder, shard))


def write_version(fs, folder: str, shard: str, payload: bytes) -> Version:
    """Write `payload` as a new version of the shard and commit it; returns the version now current.

    PUT data, PUT marker, then clean up (see the module docstring). Returns this write's version,
    or the version of a writer that committed after it (a retried task writing the same shard).
    """
    seen = current_version(fs, folder, shard)
    clock = max(time.time_ns(), int(seen.gen[:19]) + 1 if seen else 0)
    version = Version(f"{clock:019d}{os.urandom(2).hex()}", hashlib.sha256(payload).hexdigest()[:32], shard, folder)
    uploaded = time.monotonic()
    fs.pipe_file(version.data, payload)
    fs.pipe_file(version.marker, b"")
    # a writer that stalled between its two PUTs may find its data deleted as an orphan: put it back
    if time.monotonic() - uploaded > GRACE_S / 2 and not _exists_now(fs, version.data):
        fs.pipe_file(version.data, payload)
    return clean_up(fs, folder, shard) or version


def clean_up(fs, folder: str, shard: str, grace_s: float = GRACE_S) -> Version | None:
    """Delete the shard's superseded markers now, and data no current marker names once it is safe; the
    current version.

    Data is kept for `grace_s` after the version that superseded it was committed, so a query that
    listed the old version a moment ago still reads it whole, and for `grace_s` after its own upload,
    so another writer's upload that has no marker yet is never deleted.
    """
    objects = shard_objects(fs, folder, shard)
    current = current_versions(objects).get((folder, shard))
    now = datetime.now(timezone.utc)
    superseded_long_ago = current is None or _age_s(objects.get(current.marker, {}), now) > grace_s
    doomed = []
    for key, info in objects.items():
        parsed = parse(key)
        if parsed is None or parsed[0] == current:
            continue
        if parsed[1] == "commit" or (superseded_long_ago and _age_s(info, now) > grace_s):
            doomed.append(key)
    for key in sorted(doomed, key=lambda k: not k.endswith(".commit")):  # markers first
        try:
            fs.rm_file(key)
        except FileNotFoundError:
            pass  # another writer's clean-up got there first
    return current


def clean_up_all(fs, prefix: str, grace_s: float = GRACE_S) -> int:
    """`clean_up` every shard under `prefix` that has something to delete (one listing); objects deleted."""
    try:
        objects = fs.find(prefix, detail=True)
    except FileNotFoundError:
        return 0
    current = current_versions(objects)
    slots = set()
    for key in objects:
        parsed = parse(key)
        if parsed is not None and current.get((parsed[0].folder, parsed[0].shard)) != parsed[0]:
            slots.add((parsed[0].folder, parsed[0].shard))
    before = len(objects)
    for folder, shard in sorted(slots):
        clean_up(fs, folder, shard, grace_s)
    return before - len(fs.find(prefix)) if slots else 0


def delete_all(fs, folder: str) -> int:
    """Remove every version of every shard in `folder` (markers first); the number of shards that were visible."""
    try:
        keys = list(fs.find(folder))
    except FileNotFoundError:
        return 0
    visible = len(current_versions(keys))
    for key in sorted(keys, key=lambda k: not k.endswith(".commit")):
        try:
            fs.rm_file(key)
        except FileNotFoundError:
            pass
    return visible


def _exists_now(fs, key: str) -> bool:
    try:
        fs.info(key, refresh=True)  # a HEAD request, never an answer kept from before
    except FileNotFoundError:
        return False
    return True


def _age_s(info: dict, now: datetime) -> float:
    modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")  # S3, GCS, Azure
    if isinstance(modified, datetime):
        return (now - modified).total_seconds()
    return 0.0  # unknown: treat as young, never delete
