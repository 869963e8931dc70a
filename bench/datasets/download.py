"""Fetching public archives: resumable HTTP download, checksum verification, atomic unpacking.

* **Resume.** Bytes go to ``<archive>.part``. A rerun (or a retry after a dropped connection in
  the same run) asks the server for ``Range: bytes=<have>-``; a ``206`` reply is appended, a
  ``200`` reply (server ignores ranges) restarts from zero. Only a complete, verified file is
  renamed to its final name, so a final name always means a good archive.
* **Checksums.** md5 and/or sha256 as published by the host (OpenSLR, Zenodo). Where no checksum
  is published, the expected size (if known) and the archive's own integrity (gzip CRC, zip CRC,
  checked while unpacking) are what protect the user; :class:`Resource` says which.
  A mismatch deletes the ``.part`` file (it cannot be resumed into anything good) and raises
  :class:`ChecksumError` naming both digests.
* **Atomic unpack.** Archives are extracted into a hidden temporary directory next to the
  destination, member paths checked (no absolute paths, no ``..``, no links leaving the tree),
  then renamed into place. A corrupt archive fails during extraction and the temporary
  directory is removed: no half-unpacked data is ever visible under the data root.
* **Receipts.** A successful fetch writes ``<root>/.bench/receipts/<name>.json`` (URL, digests,
  size, file count), which ``bench data verify`` reads.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from bench.errors import UserError

CHUNK_BYTES = 1 << 20
USER_AGENT = "bench-codec-harness/0.1 (+https://github.com/; dataset downloader)"


class DownloadError(UserError, RuntimeError):
    """A download that could not complete; the message names the URL and what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the published digest."""


class UnpackError(DownloadError):
    """The archive is corrupt or unsafe; nothing was unpacked."""


@dataclass(frozen=True)
class Resource:
    """One published file: where it lives and how to check it.

    ``md5``/``sha256``: published digests (either or both; empty when the host publishes none).
    ``size_bytes``: the published size where known (checked before hashing: a cheap early error).
    ``unpack_to``: sub-directory of the data root the archive is extracted into ("" = the root).
    ``provides``: path (relative to the data root) that exists once the resource is unpacked;
    used to skip work that is already done.
    ``checksum_source``: where the digest comes from, for the record.
    """

    url: str
    filename: str
    md5: str = ""
    sha256: str = ""
    size_bytes: int | None = None
    unpack: bool = True
    unpack_to: str = ""
    provides: str = ""
    checksum_source: str = ""
    mirrors: tuple[str, ...] = ()

    @property
    def has_checksum(self) -> bool:
        return bool(self.md5 or self.sha256)

    def with_base_url(self, base_url: str) -> "Resource":
        """The same resource fetched from another host (``--mirror``): base_url + '/' + filename."""
        from dataclasses import replace

        return replace(self, url=base_url.rstrip("/") + "/" + self.filename, mirrors=())


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------


def file_digests(path: str | Path, algorithms: tuple[str, ...] = ("md5", "sha256"),
                 progress: bool = False) -> dict[str, str]:
    """Stream a file once through every requested hash."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    total = os.path.getsize(path)
    bar = _bar(total, f"checking {Path(path).name}", progress)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            for h in hashers.values():
                h.update(block)
            bar.update(len(block))
    bar.close()
    return {a: h.hexdigest() for a, h in hashers.items()}


def verify_checksum(path: str | Path, resource: Resource, progress: bool = False) -> dict[str, str]:
    """Check size and digests of a file against a resource; raise ChecksumError on mismatch."""
    path = Path(path)
    size = path.stat().st_size
    if resource.size_bytes is not None and size != resource.size_bytes:
        raise ChecksumError(f"{path.name}: {size} bytes, expected {resource.size_bytes} (from {resource.url})")
    wanted = {a: v.lower() for a, v in (("md5", resource.md5), ("sha256", resource.sha256)) if v}
    got = file_digests(path, tuple(wanted) or ("sha256",), progress=progress)
    for algo, value in wanted.items():
        if got[algo] != value:
            raise ChecksumError(f"{path.name}: {algo} {got[algo]} does not match the published {value} "
                                f"(from {resource.url}); the download is corrupt or the upstream file changed")
    return got


# --------------------------------------------------------------------------------------------
# HTTP with resume
# --------------------------------------------------------------------------------------------


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, dynamic_ncols=True, leave=False)


def _open(url: str, start: int, timeout_s: float):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)


def download_file(resource: Resource, dest_dir: str | Path, *, progress: bool = True, retries: int = 5,
                  timeout_s: float = 60.0, verify: bool = True,
                  on_chunk: Callable[[int], None] | None = None) -> Path:
    """Fetch ``resource`` into ``dest_dir/filename``, resuming a previous ``.part``; verify; return the path.

    An already complete, verified file is returned as is. ``on_chunk(bytes_so_far)`` is called after
    each block written (tests use it to simulate an interruption).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / resource.filename
    part = dest_dir / (resource.filename + ".part")
    if final.is_file():
        if verify:
            verify_checksum(final, resource, progress=progress)
        return final
    urls = (resource.url, *resource.mirrors)
    errors: list[str] = []
    attempt = 0
    url_index = 0
    while True:
        url = urls[url_index]
        have = part.stat().st_size if part.exists() else 0
        try:
            with _open(url, have, timeout_s) as resp:
                status = getattr(resp, "status", 200)
                if have and status == 200:
                    have = 0  # the server ignored the Range header: start over
                length = resp.headers.get("Content-Length")
                total = (have + int(length)) if length is not None else resource.size_bytes
                bar = _bar(total, resource.filename, progress)
                bar.update(have)
                with open(part, "ab" if have else "wb") as out:
                    for block in iter(lambda: resp.read(CHUNK_BYTES), b""):
                        out.write(block)
                        have += len(block)
                        bar.update(len(block))
                        if on_chunk is not None:
                            on_chunk(have)
                bar.close()
                if total is not None and have < total:
                    raise DownloadError(f"connection closed at {have} of {total} bytes")
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to fetch: the .part is already complete
                break
            if exc.code in (401, 403):
                raise DownloadError(
                    f"{url}: HTTP {exc.code} (access denied). Some corpora need you to request access on the "
                    f"host's page first; download {resource.filename} by hand into {dest_dir} and rerun "
                    f"this command to verify and unpack it.") from exc
            errors.append(f"{url}: HTTP {exc.code}")
            if exc.code == 404 and url_index + 1 < len(urls):
                url_index += 1
                continue
            if exc.code < 500:
                raise DownloadError(f"cannot download {resource.filename}: {'; '.join(errors)}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException, DownloadError) as exc:
            if isinstance(exc, (ChecksumError, UnpackError)):
                raise
            errors.append(f"{url}: {exc}")
        attempt += 1
        if attempt > retries:
            raise DownloadError(f"cannot download {resource.filename} after {retries} retries "
                                f"({'; '.join(errors[-3:])}); rerun the same command to resume from "
                                f"{part.stat().st_size if part.exists() else 0} bytes")
        time.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
    if verify:
        try:
            verify_checksum(part, resource, progress=progress)
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, final)
    return final


# --------------------------------------------------------------------------------------------
# atomic unpack
# --------------------------------------------------------------------------------------------


def _check_member_path(name: str, archive: Path) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise UnpackError(f"{archive.name}: unsafe member path {name!r}; refusing to unpack")


def _extract_tar(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                _check_member_path(member.name, archive)
                if member.issym() or member.islnk():
                    _check_member_path(str(PurePosixPath(member.name).parent / member.linkname), archive)
                if member.isdev():
                    raise UnpackError(f"{archive.name}: device file {member.name!r} in archive")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the stdlib's own safety net too
                    tf.extract(member, into, set_attrs=False, filter="data")
                else:
                    tf.extract(member, into, set_attrs=False)
    except UnpackError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # zlib errors surface as these
        raise UnpackError(f"{archive.name}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from exc


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_path(info.filename, archive)
            bad = zf.testzip()
            if bad is not None:
                raise UnpackError(f"{archive.name}: CRC error in member {bad!r}")
            zf.extractall(into)
    except UnpackError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise UnpackError(f"{archive.name}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from exc


def _merge_into(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst``: renames whole sub-trees wherever ``dst`` lacks them."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _merge_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def unpack_archive(archive: str | Path, dest: str | Path) -> list[str]:
    """Extract ``archive`` (.tar, .tar.gz, .tgz, .tar.bz2, .zip) into ``dest``, all or nothing.

    Returns the top-level names it put there.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".unpack-{archive.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        top = sorted(p.name for p in tmp.iterdir())
        if not top:
            raise UnpackError(f"{archive.name}: empty archive")
        _merge_into(tmp, dest)
        return top
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# fetch = download + verify + unpack + receipt
# --------------------------------------------------------------------------------------------


@dataclass
class Receipt:
    name: str
    url: str
    filename: str
    size_bytes: int
    digests: dict[str, str]
    checksum_checked: list[str]
    unpacked_to: str
    top_level: list[str] = field(default_factory=list)
    finished_utc: str = ""


def receipts_dir(root: str | Path) -> Path:
    return Path(root) / ".bench" / "receipts"


def read_receipt(root: str | Path, name: str) -> dict | None:
    path = receipts_dir(root) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def fetch(resource: Resource, root: str | Path, receipt_name: str, *, progress: bool = True,
          keep_archive: bool = False, downloads_dir: str | Path | None = None, force: bool = False) -> Receipt | None:
    """Download (resuming), verify and unpack ``resource`` under ``root``; write a receipt.

    Returns None when ``resource.provides`` already exists and ``force`` is false.
    Archives are downloaded to ``downloads_dir`` (default ``<root>/.bench/downloads``), deleted after
    a successful unpack unless ``keep_archive``.
    """
    root = Path(root)
    if resource.provides and (root / resource.provides).exists() and not force:
        return None
    downloads = Path(downloads_dir) if downloads_dir else root / ".bench" / "downloads"
    path = download_file(resource, downloads, progress=progress, verify=False)
    try:
        digests = verify_checksum(path, resource, progress=progress)
    except ChecksumError:
        path.unlink(missing_ok=True)
        raise
    checked = [a for a in ("md5", "sha256") if getattr(resource, a)]
    target = root / resource.unpack_to if resource.unpack_to else root
    top: list[str] = []
    if resource.unpack:
        top = unpack_archive(path, target)
    else:
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".{resource.filename}.{os.getpid()}"
        shutil.copyfile(path, tmp)
        os.replace(tmp, target / resource.filename)
        top = [resource.filename]
    receipt = Receipt(name=receipt_name, url=resource.url, filename=resource.filename,
                      size_bytes=path.stat().st_size, digests=digests, checksum_checked=checked,
                      unpacked_to=str(target), top_level=top,
                      finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    rdir = receipts_dir(root)
    rdir.mkdir(parents=True, exist_ok=True)
    tmp_receipt = rdir / f".{receipt_name}.json.{os.getpid()}"
    tmp_receipt.write_text(json.dumps(asdict(receipt), indent=2) + "\n")
    os.replace(tmp_receipt, rdir / f"{receipt_name}.json")
    if resource.unpack and not keep_archive:
        path.unlink(missing_ok=True)
    return receipt
