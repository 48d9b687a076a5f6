"""A Hugging Face Hub for one repository, on loopback, for the pull tests (no test reaches a real hub).

It answers what huggingface_hub asks, as the hub does (huggingface_hub's file_download.py and
hf_api.py read these):

* `GET /api/models/{repo}` (and `/revision/{rev}`), with `?blobs=true`: `{"id", "sha", "siblings": [
  {"rfilename", "size", "blobId", "lfs": {"sha256", "size", "pointerSize"}}]}`; an unknown repository is
  404 with `X-Error-Code: RepoNotFound`;
* `HEAD|GET /{repo}/resolve/{rev}/{path}`: for an LFS file a 302 to the "CDN" (the same server under
  the name `localhost`, another host to huggingface_hub, which then stops following and reads the
  metadata off the redirect) carrying `X-Repo-Commit`, `X-Linked-Etag: "<sha256>"` and `X-Linked-Size`;
  for a small file 200 with `ETag: "<git blob id>"` and `Content-Length`; a missing file 404 with
  `X-Error-Code: EntryNotFound`;
* `GET /cdn/{sha256}`: the bytes, honouring `Range: bytes=N-` and `bytes=N-M` with 206 and `Content-Range`.

`cut_after`: the first body sent stops after that many bytes and the connection is closed (a cut
connection); `ignore_range`: a Range is answered 200 with the whole file; `lie_sha256`: the file list
and headers advertise another sha256 (a corrupted mirror).
Every request is recorded (method, path, Range) for the tests to look at.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    path: str  # in the repository
    source: Path  # its bytes on disk
    lfs: bool = True
    sha256: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        h = hashlib.sha256()
        with self.source.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        self.sha256 = h.hexdigest()
        self.size = self.source.stat().st_size


@dataclass
class FakeHub:
    repo: str
    files: list[HubFile]
    cut_after: int | None = None
    lie_sha256: bool = False
    ignore_range: bool = False  # answer a Range request with the whole file (as some CDNs do)
    chunk_delay_s: float = 0.0  # a slow link: this pause after every 64 KiB of a body
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    authorizations: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization header)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def advertised(self, f: HubFile) -> str:
        return "f" * 64 if self.lie_sha256 else f.sha256

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self.route(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self.route(head=False)

            def route(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path, self.headers.get("Range")))
                hub.authorizations.append((path, self.headers.get("Authorization")))
                api = f"/api/models/{hub.repo}"
                if path.startswith("/api/models/"):
                    if path == api or path.startswith(api + "/revision/"):
                        return self.json(200, hub.model_info())
                    return self.error(404, "RepoNotFound", "Repository not found")
                resolve = f"/{hub.repo}/resolve/"
                if path.startswith(resolve):
                    _rev, _, rel = path[len(resolve):].partition("/")
                    f = next((f for f in hub.files if f.path == rel), None)
                    if f is None:
                        return self.error(404, "EntryNotFound", "Entry not found")
                    return self.resolve(f, head)
                if path.startswith("/cdn/"):
                    f = next((f for f in hub.files if f.sha256 == path[5:]), None)
                    if f is None:
                        return self.error(404, None, "no such object")
                    return self.body(f, head)
                if path.startswith("/") and path.count("/") >= 2 and "/api/" not in path:
                    return self.error(404, "RepoNotFound", "Repository not found")
                return self.error(404, None, "not found")

            def resolve(self, f: HubFile, head: bool) -> None:
                if f.lfs:
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{hub.port}/cdn/{f.sha256}")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("X-Linked-Etag", f'"{hub.advertised(f)}"')
                    self.send_header("X-Linked-Size", str(f.size))
                    self.send_header("ETag", '"' + "e" * 40 + '"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{git_blob_id(f.source.read_bytes())}"')
                self.send_header("Content-Length", str(f.size))
                self.end_headers()
                if not head:
                    self.wfile.write(f.source.read_bytes())

            def body(self, f: HubFile, head: bool) -> None:
                start, end = 0, f.size - 1
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not hub.ignore_range:
                    first, _, last = rng[6:].partition("-")
                    start, end = int(first), min(int(last), f.size - 1) if last else f.size - 1
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end + 1 - start))
                self.end_headers()
                if head:
                    return
                cut = hub.cut_after
                with f.source.open("rb") as fh:
                    fh.seek(start)
                    sent = 0
                    left = end + 1 - start
                    while left > 0 and (chunk := fh.read(min(1 << 16, left))):
                        left -= len(chunk)
                        if cut is not None and sent + len(chunk) > cut:
                            hub.cut_after = None  # only the first body is cut
                            self.wfile.write(chunk[: cut - sent])
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        if hub.chunk_delay_s:
                            time.sleep(hub.chunk_delay_s)

            def json(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def error(self, status: int, code: str | None, message: str) -> None:
                data = json.dumps({"error": message}).encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def model_info(self) -> dict[str, object]:
        siblings: list[dict[str, object]] = []
        for f in self.files:
            entry: dict[str, object] = {"rfilename": f.path, "size": f.size,
                                        "blobId": git_blob_id(f.source.read_bytes()) if not f.lfs else "b" * 40}
            if f.lfs:
                entry["lfs"] = {"sha256": self.advertised(f), "size": f.size, "pointerSize": 134}
            siblings.append(entry)
        return {"id": self.repo, "modelId": self.repo, "sha": COMMIT, "private": False, "gated": False,
                "tags": ["gguf"], "siblings": siblings}

    def range_requests(self) -> list[str]:
        return [r for m, p, r in self.requests if m == "GET" and p.startswith("/cdn/") and r]


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up early (the cut connection, a header read) is not an error worth a traceback;
    the handler's own mistakes show to the client as a broken answer."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
