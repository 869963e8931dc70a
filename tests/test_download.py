"""Downloads against a real HTTP server on 127.0.0.1 serving archives this test builds.

Good archive: downloads, verifies, unpacks, writes a receipt. Corrupted: checksum error, nothing
unpacked, no partial file. Interrupted: the next call resumes with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.datasets.download import (ChecksumError, DownloadError, Resource, UnpackError, download_file, fetch,
                                     read_receipt, unpack_archive)


class _Server:
    """Serves ``files`` (name -> bytes) with Range support; can cut a response short or ignore ranges."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before the connection is dropped (once)
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("?")[0]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                if rng and name not in server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _wav_bytes(seconds=0.5, sr=24000, seed=0):
    buf = io.BytesIO()
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _libritts_tar(split="test-clean", n=3) -> bytes:
    """A tar.gz in the OpenSLR LibriTTS layout, with incompressible audio so it has some size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(n):
            spk, chap = f"{100 + i}", "2000"
            utt = f"{spk}_{chap}_000001_00000{i}"
            for suffix, data in ((".wav", _wav_bytes(seed=i)), (".normalized.txt", f"sentence number {i}".encode())):
                info = tarfile.TarInfo(f"LibriTTS/{split}/{spk}/{chap}/{utt}{suffix}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _resource(server, name, data, **kw):
    return Resource(url=f"{server.url}/{name}", filename=name, md5=hashlib.md5(data).hexdigest(),
                    sha256=hashlib.sha256(data).hexdigest(), **kw)


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if ".part" in p.name or ".unpack-" in p.name]


def test_good_archive_unpacks_verifies_and_writes_receipt(server, tmp_path):
    data = _libritts_tar()
    server.files["test-clean.tar.gz"] = data
    res = _resource(server, "test-clean.tar.gz", data, provides="LibriTTS/test-clean")
    receipt = fetch(res, tmp_path, "libritts-test-clean", progress=False)
    assert receipt is not None and receipt.checksum_checked == ["md5", "sha256"]
    wavs = sorted((tmp_path / "LibriTTS" / "test-clean").glob("*/*/*.wav"))
    assert len(wavs) == 3 and sf.info(str(wavs[0])).samplerate == 24000
    assert read_receipt(tmp_path, "libritts-test-clean")["digests"]["md5"] == hashlib.md5(data).hexdigest()
    assert not (tmp_path / ".bench" / "downloads" / "test-clean.tar.gz").exists()  # archive removed
    assert not _leftovers(tmp_path)
    # present already: nothing is fetched again
    n = len(server.requests)
    assert fetch(res, tmp_path, "libritts-test-clean", progress=False) is None
    assert len(server.requests) == n


def test_second_split_merges_into_existing_tree(server, tmp_path):
    for split in ("test-clean", "dev-clean"):
        data = _libritts_tar(split)
        server.files[f"{split}.tar.gz"] = data
        fetch(_resource(server, f"{split}.tar.gz", data), tmp_path, f"libritts-{split}", progress=False)
    assert sorted(p.name for p in (tmp_path / "LibriTTS").iterdir()) == ["dev-clean", "test-clean"]


def test_corrupted_archive_fails_checksum_and_leaves_nothing(server, tmp_path):
    data = _libritts_tar()
    corrupted = bytearray(data)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.files["test-clean.tar.gz"] = bytes(corrupted)
    res = _resource(server, "test-clean.tar.gz", data)  # published digest of the good bytes
    with pytest.raises(ChecksumError, match="md5 .* does not match"):
        fetch(res, tmp_path, "libritts-test-clean", progress=False)
    assert not (tmp_path / "LibriTTS").exists()
    assert not list((tmp_path / ".bench" / "downloads").iterdir())  # no .part, no archive
    assert read_receipt(tmp_path, "libritts-test-clean") is None


def test_corrupt_archive_without_checksum_fails_unpack_atomically(server, tmp_path):
    data = _libritts_tar()
    truncated = data[: len(data) * 2 // 3]  # a gzip stream cut short: only the archive can tell
    server.files["x.tar.gz"] = truncated
    res = Resource(url=f"{server.url}/x.tar.gz", filename="x.tar.gz")
    with pytest.raises(UnpackError, match="corrupt or truncated"):
        fetch(res, tmp_path, "x", progress=False)
    assert not (tmp_path / "LibriTTS").exists()
    assert not _leftovers(tmp_path)


def test_size_mismatch_is_reported(server, tmp_path):
    data = _libritts_tar()
    server.files["a.tar.gz"] = data
    res = Resource(url=f"{server.url}/a.tar.gz", filename="a.tar.gz", size_bytes=len(data) + 1)
    with pytest.raises(ChecksumError, match="bytes, expected"):
        fetch(res, tmp_path, "a", progress=False)


def test_interrupted_download_resumes_with_range(server, tmp_path):
    data = _libritts_tar(n=6)
    cut = len(data) // 3
    server.files["test-clean.tar.gz"] = data
    server.cut_after["test-clean.tar.gz"] = cut
    res = _resource(server, "test-clean.tar.gz", data)
    with pytest.raises(DownloadError, match="rerun the same command to resume"):
        download_file(res, tmp_path, progress=False, retries=0)
    part = tmp_path / "test-clean.tar.gz.part"
    assert part.stat().st_size == cut and not (tmp_path / "test-clean.tar.gz").exists()
    path = download_file(res, tmp_path, progress=False, retries=0)
    assert path.read_bytes() == data and not part.exists()
    assert server.requests[-1] == ("test-clean.tar.gz", f"bytes={cut}-")


def test_dropped_connection_is_retried_within_one_call(server, tmp_path):
    data = _libritts_tar(n=4)
    server.files["f.tar.gz"] = data
    server.cut_after["f.tar.gz"] = 1000
    res = _resource(server, "f.tar.gz", data)
    assert download_file(res, tmp_path, progress=False, retries=2).read_bytes() == data
    assert [r for _, r in server.requests] == [None, "bytes=1000-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = _libritts_tar(n=2)
    server.files["g.tar.gz"] = data
    server.ignore_range.add("g.tar.gz")
    (tmp_path / "g.tar.gz.part").write_bytes(data[:500])
    res = _resource(server, "g.tar.gz", data)
    assert download_file(res, tmp_path, progress=False, retries=0).read_bytes() == data


def test_complete_part_file_and_http_errors(server, tmp_path):
    data = b"x" * 5000
    server.files["h.bin"] = data
    (tmp_path / "h.bin.part").write_bytes(data)  # killed after the last byte, before the rename
    res = _resource(server, "h.bin", data, unpack=False)
    assert download_file(res, tmp_path, progress=False, retries=0).read_bytes() == data
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(Resource(url=f"{server.url}/missing.tar.gz", filename="missing.tar.gz"), tmp_path,
                      progress=False, retries=0)


def test_mirror_fallback_on_404(server, tmp_path):
    data = b"payload" * 100
    server.files["m.bin"] = data
    res = Resource(url=f"{server.url}/gone/m.bin", filename="m.bin", md5=hashlib.md5(data).hexdigest(),
                   mirrors=(f"{server.url}/m.bin",))
    assert download_file(res, tmp_path, progress=False, retries=0).read_bytes() == data


def test_unsafe_member_paths_are_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(UnpackError, match="unsafe"):
        unpack_archive(evil, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists()
    assert not [p for p in (tmp_path / "dest").iterdir()]


def test_zip_archives_unpack_and_crc_errors_are_caught(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("test/track.wav", _wav_bytes())
    assert unpack_archive(good, tmp_path / "out") == ["test"]
    raw = bytearray(good.read_bytes())
    raw[100] ^= 0xFF  # inside the stored member's data: CRC mismatch
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(raw))
    with pytest.raises(UnpackError):
        unpack_archive(bad, tmp_path / "out2")
    assert not list((tmp_path / "out2").iterdir())


def test_cli_download_verify_and_missing_message(server, tmp_path, monkeypatch, capsys):
    """`bench data download libritts` end to end through --mirror, with the test's own digests pinned."""
    import bench.datasets.libritts as lt
    from bench.cli import main

    data = _libritts_tar("test-clean")
    server.files["test-clean.tar.gz"] = data
    monkeypatch.setitem(lt._LIBRITTS_MD5, "test-clean", hashlib.md5(data).hexdigest())
    monkeypatch.setitem(lt._LIBRITTS_SHA256, "test-clean", hashlib.sha256(data).hexdigest())
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    assert main(["data", "verify", "libritts", "--split", "test-clean"]) == 2
    err = capsys.readouterr().err
    assert "bench data download libritts --split test-clean" in err and err.count("\n") == 1
    assert main(["data", "download", "libritts", "--split", "test-clean", "--mirror", server.url, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "verified (md5, sha256)" in out
    assert main(["data", "verify", "libritts", "--split", "test-clean"]) == 0
    out = capsys.readouterr().out
    assert "3 items, 0 unreadable" in out and "ok" in out
    assert main(["data", "ls"]) == 0
    assert "+test-clean" in capsys.readouterr().out
    # a damaged file is caught by verify
    wav = next((tmp_path / "data" / "LibriTTS" / "test-clean").rglob("*.wav"))
    wav.write_bytes(b"not audio")
    assert main(["data", "verify", "libritts", "--split", "test-clean"]) == 1
    assert "unreadable header" in capsys.readouterr().out
