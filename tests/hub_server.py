"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for push/load tests.

It speaks the subset of the Hub HTTP API that `datasets.push_to_hub` and
`datasets.load_dataset` use with `HF_HUB_DISABLE_XET=1`:

- `GET  /api/whoami-v2`                                  who the token belongs to
- `GET  /api/{type}s/{repo}[/revision/{rev}]`              repo info (sha, siblings)
- `POST /api/repos/create`                                 create a repo (409 if it exists)
- `POST /api/validate-yaml`                                the README card's YAML must parse
- `POST /api/{type}s/{repo}/preupload/{rev}`               upload mode: `lfs` for data, `regular` for text
- `POST /{prefix}{repo}.git/info/lfs/objects/batch`        LFS batch: where to PUT each object
- `PUT  /lfs-objects/{oid}`                                the LFS upload itself (sha256 checked)
- `POST /api/{type}s/{repo}/commit/{rev}`                  an ndjson commit (header, file, lfsFile, deleted*)
- `GET  /api/{type}s/{repo}/tree/{rev}[/{path}]`           tree listing (recursive or not)
- `POST /api/{type}s/{repo}/paths-info/{rev}`              info for given paths
- `GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}`          file download (with Range)

It is not the Hub: no Xet storage, no git, no pagination, no branches other
than `main` (a commit sha works as a revision). When started with a `token`,
every API call must carry `Authorization: Bearer <token>` (LFS PUTs go to
"storage" and carry none, as on the real Hub).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REGULAR_SUFFIXES = (".md", ".json", ".txt", ".gitattributes", ".yaml", ".yml")
_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (oid, files)

    @property
    def head(self) -> tuple[str, dict[str, bytes]]:
        return self.commits[-1]

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        revision = unquote(revision)
        if revision in ("main", "refs/heads/main"):
            return self.head
        for oid, files in self.commits:
            if oid == revision:
                return oid, files
        return None


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "oid": _git_blob_oid(data), "size": len(data), "path": path}
    if not path.endswith(REGULAR_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _folders(files: dict[str, bytes]) -> set[str]:
    out = set()
    for path in files:
        parts = path.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


class HubServer:
    """Run with `with HubServer(token=...) as hub:`; `hub.url` is the HF_ENDPOINT."""

    def __init__(self, token: str | None = None, user: str = "tester"):
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.reject_commits_with: str | None = None  # a message template for failing commits
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def files(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)].head[1])


def _make_handler(hub: HubServer):
    api_repo = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(/.*)?$")
    resolve = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
    lfs_batch = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep test output clean; requests are recorded instead
            return

        # ------------------------------------------------------------ helpers
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str | None, message: str) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, {"error": message}, headers)

        def _authorized(self) -> bool:
            if hub.token is None:
                return True
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _repo(self, kind: str, repo_id: str) -> Repo | None:
            return hub.repos.get((kind.rstrip("s"), repo_id))

        # ------------------------------------------------------------ routing
        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def do_PUT(self):
            self._dispatch("PUT")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            hub.requests.append((method, path))
            body = self._body() if method in ("POST", "PUT") else b""
            if method == "PUT" and path.startswith("/lfs-objects/"):
                return self._lfs_put(path.rsplit("/", 1)[1], body)
            if not self._authorized():
                return self._error(401, None, "Invalid credentials in Authorization header")
            with hub.lock:
                if path == "/api/whoami-v2":
                    return self._send(200, {"type": "user", "name": hub.user, "orgs": [], "auth": {}})
                if path == "/api/validate-yaml" and method == "POST":
                    return self._validate_yaml(json.loads(body)["content"])
                if path == "/api/repos/create" and method == "POST":
                    return self._create(json.loads(body))
                if m := lfs_batch.match(path):
                    return self._lfs_batch(json.loads(body))
                if m := resolve.match(path):
                    kind = (m.group(1) or "models/").rstrip("/")
                    return self._resolve(kind, m.group(2), m.group(3), m.group(4))
                if m := api_repo.match(path):
                    return self._api(method, m.group(1), m.group(2), m.group(3) or "", query, body)
            return self._error(404, None, f"no route for {method} {path}")

        # ------------------------------------------------------------ endpoints
        def _create(self, payload: dict) -> None:
            kind = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
            url = f"{hub.url}/{_PREFIX[kind]}{repo_id}"
            if (kind, repo_id) in hub.repos:  # the Hub's 409 carries the url too
                return self._send(409, {"error": "You already created this repo", "url": url},
                                  {"X-Error-Message": "You already created this repo"})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))  # new / old clients
            repo = Repo(kind, repo_id, private)
            initial = {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}
            repo.commits.append((hashlib.sha1(f"init:{repo_id}".encode()).hexdigest(), initial))
            hub.repos[(kind, repo_id)] = repo
            return self._send(200, {"url": url, "name": repo_id, "id": repo_id})

        def _validate_yaml(self, content: str) -> None:
            m = re.match(r"^---\n(.*?)\n---", content, re.S)
            try:
                meta = yaml.safe_load(m.group(1)) if m else {}
            except yaml.YAMLError as exc:
                return self._send(400, {"errors": [{"message": f"invalid YAML: {exc}"}]})
            if meta is not None and not isinstance(meta, dict):
                return self._send(400, {"errors": [{"message": "metadata must be a mapping"}]})
            return self._send(200, {"errors": [], "warnings": []})

        def _api(self, method: str, kind: str, repo_id: str, rest: str, query: dict, body: bytes) -> None:
            repo = self._repo(kind, repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if rest == "" or rest.startswith("/revision/"):
                return self._info(repo, rest[len("/revision/"):] if rest else "main")
            m = re.match(r"^/(preupload|commit|tree|paths-info)/([^/]+)(?:/(.*))?$", rest)
            if not m:
                return self._error(404, None, f"unknown repo route {rest}")
            action, revision, sub = m.groups()
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._send(200, {"files": [
                    {"path": f["path"], "shouldIgnore": False,
                     "uploadMode": "regular" if f["path"].endswith(REGULAR_SUFFIXES) else "lfs"}
                    for f in files]})
            if action == "commit":
                return self._commit(repo, body)
            snap = repo.snapshot(revision)
            if snap is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if action == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                return self._tree(snap[1], (sub or "").strip("/"), recursive)
            return self._paths_info(snap[1], parse_qs(body.decode()).get("paths", []))

        def _info(self, repo: Repo, revision: str) -> None:
            snap = repo.snapshot(revision)
            if snap is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            oid, files = snap
            return self._send(200, {
                "id": repo.repo_id, "_id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": oid,
                "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                "tags": [], "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "siblings": [{"rfilename": p} for p in sorted(files)],
            })

        def _commit(self, repo: Repo, body: bytes) -> None:
            if hub.reject_commits_with is not None:
                message = hub.reject_commits_with.format(headers=dict(self.headers))
                return self._error(500, None, message)
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = lines[0]["value"]
            head_oid, files = repo.head
            parent = header.get("parentCommit")
            if parent and parent != head_oid:
                return self._error(412, None, "parent commit is not the head of main")
            files = dict(files)
            for item in lines[1:]:
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs:
                        return self._error(422, None, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = hub.lfs[value["oid"]]
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
                else:
                    return self._error(400, None, f"unsupported commit operation {key}")
            oid = hashlib.sha1(f"{head_oid}:{len(repo.commits)}:{sorted(files)}".encode()).hexdigest()
            repo.commits.append((oid, files))
            url = f"{hub.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{oid}"
            return self._send(200, {"commitUrl": url, "commitOid": oid, "success": True})

        def _tree(self, files: dict[str, bytes], path: str, recursive: bool) -> None:
            prefix = path + "/" if path else ""
            if path and path not in _folders(files):
                return self._error(404, "EntryNotFound", f"{path} does not exist")
            entries = []
            for folder in sorted(_folders(files)):
                rel = folder[len(prefix):]
                if folder.startswith(prefix) and rel and (recursive or "/" not in rel):
                    entries.append({"type": "directory", "oid": _git_blob_oid(folder.encode()), "size": 0,
                                    "path": folder})
            for p in sorted(files):
                rel = p[len(prefix):]
                if p.startswith(prefix) and (recursive or "/" not in rel):
                    entries.append(_entry(p, files[p]))
            return self._send(200, entries)

        def _paths_info(self, files: dict[str, bytes], paths: list[str]) -> None:
            out = []
            for p in paths:
                p = p.strip("/")
                if p in files:
                    out.append(_entry(p, files[p]))
                elif p in _folders(files):
                    out.append({"type": "directory", "oid": _git_blob_oid(p.encode()), "size": 0, "path": p})
            return self._send(200, out)

        def _lfs_batch(self, payload: dict) -> None:
            objects = []
            for obj in payload["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs:
                    entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-objects/{obj['oid']}", "header": {}}}
                objects.append(entry)
            return self._send(200, {"transfer": "basic", "objects": objects},
                              {"Content-Type": "application/vnd.git-lfs+json"})

        def _lfs_put(self, oid: str, body: bytes) -> None:
            if hashlib.sha256(body).hexdigest() != oid:
                return self._error(400, None, "sha256 of the uploaded object does not match its oid")
            with hub.lock:
                hub.lfs[oid] = body
            return self._send(200, b"")

        def _resolve(self, kind: str, repo_id: str, revision: str, path: str) -> None:
            repo = self._repo(kind, repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            snap = repo.snapshot(revision)
            if snap is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            oid, files = snap
            if path not in files:
                return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}")
            data = files[path]
            entry = _entry(path, data)
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
            if "lfs" in entry:
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": len(data)})
            rng = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if rng and self.command == "GET":
                start = int(rng.group(1) or 0)
                end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, data[start:end + 1], headers)
            return self._send(200, data, headers)  # a HEAD gets the same headers, no body

    return Handler
