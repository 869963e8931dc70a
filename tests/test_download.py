"""Downloads against a real HTTP server on 127.0.0.1 serving archives this test builds.

Good archive: downloads, verifies, unpacks, writes a receipt. Corrupted: checksum error, nothing
unpacked, no partial file. Interrupted: the next call resumes with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import bench.datasets.download as dl
from bench.datasets.download import (ChecksumError, DownloadError, Resource, TransferAborted, UnpackError,
                                     default_deadline_s, download_file, fetch, read_receipt, unpack_archive,
                                     unpack_cap_bytes)


class _Server:
    """Serves ``files`` (name -> bytes) with Range support; can cut a response short or ignore ranges."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before the connection is dropped (once)
        self.ignore_range: set[str] = set()
        self.trickle_s: dict[str, float] = {}  # name -> seconds between single bytes
        self.no_length: set[str] = set()  # no Content-Length: the body ends when the connection closes
        self.declared_length: dict[str, int] = {}  # name -> Content-Length sent, whatever the body's size
        self.wrong_range_start: set[str] = set()  # answers a Range request with the file from byte 0
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
                if rng and name in server.wrong_range_start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
                elif rng and name not in server.ignore_range:
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
                if name not in server.no_length:
                    self.send_header("Content-Length", str(server.declared_length.get(name, len(body))))
                self.end_headers()
                if name in server.trickle_s:
                    self._trickle(body, server.trickle_s[name])
                    return
                cut = server.cut_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _trickle(self, body, pause_s):
                import time

                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        time.sleep(pause_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

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


# --------------------------------------------------------------------------------------------
# limits: deadline, oversized streams, bombs
# --------------------------------------------------------------------------------------------


def test_trickling_server_is_stopped_by_the_deadline(server, tmp_path):
    data = b"t" * 2000  # at one byte per 20 ms: 40 s
    server.files["slow.bin"] = data
    server.trickle_s["slow.bin"] = 0.02
    res = _resource(server, "slow.bin", data, unpack=False)
    t0 = time.monotonic()
    with pytest.raises(TransferAborted, match=r"deadline 0\.4 s.*rerun the same command to resume"):
        download_file(res, tmp_path, progress=False, retries=3, timeout_s=30, deadline_s=0.4)
    assert time.monotonic() - t0 < 1.5  # neither the socket timeout nor the retries extended it
    assert len(server.requests) == 1  # a deadline is not retried
    part = tmp_path / "slow.bin.part"
    assert 0 < part.stat().st_size < len(data) and not (tmp_path / "slow.bin").exists()  # resumable


def test_default_deadline_follows_the_expected_size(server, tmp_path, monkeypatch):
    assert default_deadline_s(None) == 600.0 and default_deadline_s(10 ** 6) == 600.0
    assert default_deadline_s(10 ** 9) == pytest.approx(10 ** 9 / 100_000)
    monkeypatch.setattr(dl, "DEADLINE_MIN_S", 0.2)
    monkeypatch.setattr(dl, "DEADLINE_MIN_RATE_BPS", 10_000)  # 2000 bytes from Content-Length: 0.2 s
    server.files["slow.bin"] = b"t" * 2000
    server.trickle_s["slow.bin"] = 0.02
    res = Resource(url=f"{server.url}/slow.bin", filename="slow.bin", unpack=False)  # no size in the manifest
    t0 = time.monotonic()
    with pytest.raises(TransferAborted, match="deadline"):
        download_file(res, tmp_path, progress=False, retries=0, timeout_s=30)
    assert time.monotonic() - t0 < 1.5


def test_stream_longer_than_the_manifest_size_is_stopped_and_removed(server, tmp_path):
    data = b"d" * 3000
    server.files["big.bin"] = data * 50  # no Content-Length: only the manifest's size can stop it
    server.no_length.add("big.bin")
    res = Resource(url=f"{server.url}/big.bin", filename="big.bin", size_bytes=len(data), unpack=False)
    with pytest.raises(TransferAborted, match="more than the 3000 bytes expected.*partial file was removed"):
        download_file(res, tmp_path, progress=False, retries=2, verify=False)
    assert not list(tmp_path.iterdir()) and len(server.requests) == 1
    server.files["big.bin"] = data  # the host is fixed: the next run starts clean and succeeds
    assert download_file(res, tmp_path, progress=False, retries=0).read_bytes() == data


def test_announced_length_over_the_manifest_is_refused_before_reading(server, tmp_path):
    data = b"e" * 4000
    server.files["e.bin"] = data
    (tmp_path / "e.bin.part").write_bytes(data[:1000])  # a previous run's bytes: of which file?
    res = Resource(url=f"{server.url}/e.bin", filename="e.bin", size_bytes=3000, unpack=False)
    with pytest.raises(TransferAborted, match="announces 4000 bytes, more than the 3000 expected"):
        fetch(res, tmp_path, "e", progress=False, downloads_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_body_past_content_length_is_not_kept(server, tmp_path):
    """http.client itself stops at Content-Length; the file holds exactly the declared bytes."""
    data = b"f" * 2000
    server.files["f.bin"] = data + b"junk" * 500
    server.declared_length["f.bin"] = len(data)
    res = Resource(url=f"{server.url}/f.bin", filename="f.bin", md5=hashlib.md5(data).hexdigest(), unpack=False)
    assert download_file(res, tmp_path, progress=False, retries=0).read_bytes() == data


def test_part_longer_than_the_manifest_restarts_from_zero(server, tmp_path):
    data = b"g" * 2000
    server.files["g.bin"] = data
    (tmp_path / "g.bin.part").write_bytes(b"x" * 2500)
    res = Resource(url=f"{server.url}/g.bin", filename="g.bin", size_bytes=len(data), unpack=False)
    assert download_file(res, tmp_path, progress=False, retries=0).read_bytes() == data
    assert server.requests == [("g.bin", None)]


def test_ranged_reply_from_the_wrong_offset_is_not_appended(server, tmp_path):
    """Without a checksum nothing else would notice the file's first bytes twice."""
    data = bytes(range(256)) * 8
    server.files["h.bin"] = data
    server.wrong_range_start.add("h.bin")
    (tmp_path / "h.bin.part").write_bytes(data[:700])
    res = Resource(url=f"{server.url}/h.bin", filename="h.bin", unpack=False)  # no checksum, no size
    assert download_file(res, tmp_path, progress=False, retries=1).read_bytes() == data
    assert [r for _, r in server.requests] == ["bytes=700-", None]


def _zeros_tar_gz(path: Path, size: int, members: int = 1) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for i in range(members):
            info = tarfile.TarInfo(f"bomb/{i}.bin")
            info.size = size
            tf.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_tar_and_zip_bombs_are_refused_with_nothing_unpacked(tmp_path):
    tar_bomb = _zeros_tar_gz(tmp_path / "bomb.tar.gz", 2 << 20)  # 2 MiB of zeros in a few kB
    many = _zeros_tar_gz(tmp_path / "many.tar.gz", 0, members=2200)  # empty files: headers only
    zip_bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zip_bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/zeros.bin", bytes(2 << 20))
    for archive in (tar_bomb, many, zip_bomb):
        assert archive.stat().st_size < 64 << 10
        dest = tmp_path / f"out-{archive.name}"
        with pytest.raises(UnpackError, match="unpacks to more than 1048576 bytes"):
            unpack_archive(archive, dest, max_unpacked_bytes=1 << 20)
        assert not list(dest.iterdir())
    small = _zeros_tar_gz(tmp_path / "small.tar.gz", 1000)
    assert unpack_archive(small, tmp_path / "ok", max_unpacked_bytes=1 << 20) == ["bomb"]


def test_default_unpack_cap_is_a_multiple_of_the_archive_size(server, tmp_path, monkeypatch):
    assert unpack_cap_bytes(1000) == dl.UNPACK_MIN_CAP_BYTES
    assert unpack_cap_bytes(10 ** 9) == dl.UNPACK_MAX_RATIO * 10 ** 9
    monkeypatch.setattr(dl, "UNPACK_MIN_CAP_BYTES", 64 << 10)
    bomb = _zeros_tar_gz(tmp_path / "bomb.tar.gz", 2 << 20).read_bytes()
    server.files["bomb.tar.gz"] = bomb
    with pytest.raises(UnpackError, match="unpacks to more than"):
        fetch(_resource(server, "bomb.tar.gz", bomb), tmp_path / "data", "bomb", progress=False)
    assert not (tmp_path / "data" / "bomb").exists() and not _leftovers(tmp_path / "data")
    data = _libritts_tar()  # incompressible audio: well under 20x
    server.files["ok.tar.gz"] = data
    assert fetch(_resource(server, "ok.tar.gz", data), tmp_path / "data", "ok", progress=False) is not None


def test_links_leaving_the_tree_are_refused(tmp_path):
    for kind, target in ((tarfile.SYMTYPE, "../../etc"), (tarfile.SYMTYPE, "/etc/passwd"),
                         (tarfile.LNKTYPE, "/etc/passwd")):
        evil = tmp_path / "evil.tar"
        with tarfile.open(evil, "w") as tf:
            info = tarfile.TarInfo("top/link")
            info.type, info.linkname = kind, target
            tf.addfile(info)
        dest = tmp_path / f"dest{kind!r}{len(target)}"
        with pytest.raises(UnpackError, match="unsafe"):
            unpack_archive(evil, dest)
        assert not list(dest.iterdir())
        os.remove(evil)
