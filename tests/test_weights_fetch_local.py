"""``bench weights fetch`` against a local imitation of the Hugging Face hub on 127.0.0.1.

The real ``huggingface_hub.snapshot_download`` code path runs (repo info, tree listing, HEAD and GET
per file) but offline: the command runs in a subprocess whose ``HF_ENDPOINT`` points at the local
server and whose ``HF_HUB_CACHE`` is a temporary folder, because ``huggingface_hub`` reads both at
import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HUB_ID = "facebook/encodec_24khz"
SHA = "0123456789abcdef0123456789abcdef01234567"
CONFIG = json.dumps({"model_type": "encodec", "sampling_rate": 24000}).encode()
WEIGHTS = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(64))
PICKLE = b"never fetched: a pickle"
#: a repository as bench wants it, and one that also holds a pickle (which fetch must skip)
SAFE = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
WITH_PICKLE = {**SAFE, "pytorch_model.bin": PICKLE}
LFS = {"model.safetensors", "pytorch_model.bin"}


def _git_oid(data: bytes) -> str:
    """The git blob id of ``data``: the ETag the hub sends for a file stored in git (not LFS)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _tree(files: dict[str, bytes]) -> list[dict[str, object]]:
    """The ``/api/models/REPO/tree/SHA`` listing: one entry per served file, LFS ones with their sha256."""
    entries: list[dict[str, object]] = []
    for name, data in files.items():
        entry: dict[str, object] = {"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
        if name in LFS:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
        entries.append(entry)
    return entries


class _Hub(BaseHTTPRequestHandler):
    """Answers the few requests ``snapshot_download`` makes, for one repository at one commit."""

    missing = False  #: when True every request is a 404 "repository not found"
    files: dict[str, bytes] = SAFE  #: the repository's files at commit ``SHA``

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        """Keep the test output quiet."""

    def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool) -> None:
        """Write one response with ``Content-Length`` and the given headers."""
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _json(self, payload: object) -> None:
        """A 200 JSON response."""
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"}, True)

    def _not_found(self, with_body: bool) -> None:
        """The hub's answer for a repository that does not exist (or is private)."""
        body = json.dumps({"error": "Repository not found"}).encode()
        self._send(404, body, {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound",
                               "X-Error-Message": "Repository not found"}, with_body)

    def _file(self, with_body: bool) -> None:
        """``/REPO/resolve/REV/FILE``: the bytes, with the commit, ETag and (for LFS) linked headers."""
        name = self.path.split("?")[0].split(f"/{HUB_ID}/resolve/", 1)[1].split("/", 1)[1]
        data = self.files.get(name)
        if data is None:
            self._send(404, b"", {"X-Repo-Commit": SHA, "X-Error-Code": "EntryNotFound"}, with_body)
            return
        headers = {"X-Repo-Commit": SHA, "ETag": f'"{_git_oid(data)}"', "Content-Type": "application/octet-stream"}
        if name in LFS:
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))})
        self._send(200, data, headers, with_body)

    def _route(self, with_body: bool) -> None:
        """Dispatch on the path: repo info, tree listing or a file."""
        path = self.path.split("?")[0]
        if self.missing:
            self._not_found(with_body)
        elif path.startswith(f"/api/models/{HUB_ID}/revision/"):
            self._json({"id": HUB_ID, "modelId": HUB_ID, "sha": SHA, "private": False,
                        "siblings": [{"rfilename": name} for name in self.files]})
        elif path.startswith(f"/api/models/{HUB_ID}/tree/"):
            self._json(_tree(self.files))
        elif path.startswith(f"/{HUB_ID}/resolve/"):
            self._file(with_body)
        else:
            self._not_found(with_body)

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        """GET: JSON API calls and file downloads."""
        self._route(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        """HEAD: file metadata (``get_hf_file_metadata``)."""
        self._route(with_body=False)


def _serve(files: dict[str, bytes], missing: bool = False) -> Iterator[str]:
    """Run a local hub serving ``files`` in a thread and yield its endpoint URL; shut it down afterwards."""
    handler = type("Hub", (_Hub,), {"missing": missing, "files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def hub() -> Iterator[str]:
    """The endpoint of a local hub serving ``HUB_ID`` (config + safetensors) at commit ``SHA``."""
    yield from _serve(SAFE)


@pytest.fixture()
def pickle_hub() -> Iterator[str]:
    """The endpoint of a local hub whose ``HUB_ID`` also holds a ``pytorch_model.bin``."""
    yield from _serve(WITH_PICKLE)


@pytest.fixture()
def empty_hub() -> Iterator[str]:
    """The endpoint of a local hub on which no repository exists."""
    yield from _serve({}, missing=True)


def _bench(args: list[str], endpoint: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """Run ``bench ARGS`` in a fresh interpreter pointed at ``endpoint`` and ``cache``, with no proxy or token."""
    env = {key: value for key, value in os.environ.items()
           if not key.upper().endswith("_PROXY") and not key.startswith("HF_")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1", "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_ETAG_TIMEOUT": "5",
                "HF_HUB_DOWNLOAD_TIMEOUT": "5"})
    code = "import sys; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_fetch_downloads_into_cache_then_found_offline(pickle_hub: str, tmp_path: Path) -> None:
    """The served config and safetensors land in ``models--OWNER--NAME/snapshots/SHA``; the pickle does not."""
    cache = tmp_path / "hub-cache"
    done = _bench(["weights", "fetch", HUB_ID], pickle_hub, cache)
    assert done.returncode == 0, done.stderr
    snapshot = cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / SHA
    assert (snapshot / "config.json").read_bytes() == CONFIG
    assert (snapshot / "model.safetensors").read_bytes() == WEIGHTS
    assert not (snapshot / "pytorch_model.bin").exists()
    assert f"{HUB_ID}: {snapshot}" in done.stdout

    listing = _bench(["weights", "ls"], "http://127.0.0.1:9", cache)  # a dead endpoint: ls must not need one
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if HUB_ID in line)
    assert str(snapshot) in line and "missing" not in line


def test_resolve_weights_finds_fetched_snapshot(hub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a fetch, ``resolve_weights`` finds the snapshot in the same cache without any network."""
    from huggingface_hub import constants

    from bench.hub import resolve_weights

    cache = tmp_path / "hub-cache"
    assert _bench(["weights", "fetch", HUB_ID], hub, cache).returncode == 0
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    snapshot = cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / SHA
    assert resolve_weights(HUB_ID, HUB_ID) == snapshot


def test_resolve_weights_after_fetch_of_repo_with_pickle(pickle_hub: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetched repo that also has a pickle on the hub is still found offline (known bug: see the xfail)."""
    from huggingface_hub import constants

    from bench.hub import resolve_weights

    cache = tmp_path / "hub-cache"
    assert _bench(["weights", "fetch", HUB_ID], pickle_hub, cache).returncode == 0
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert resolve_weights(HUB_ID, HUB_ID) == cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / SHA


def test_fetch_missing_repo_is_one_line_exit_2(empty_hub: str, tmp_path: Path) -> None:
    """A repository the hub does not have: exit 2 and a single line naming it, no traceback."""
    done = _bench(["weights", "fetch", "nobody/nothing"], empty_hub, tmp_path / "hub-cache")
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "nobody/nothing" in err and "RepositoryNotFoundError" in err and "Traceback" not in err
