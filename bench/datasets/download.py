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
* **Limits.** ``timeout_s`` bounds each socket read and an overall deadline bounds the whole
  download (default ``max(10 min, expected size / 100 kB/s)``, a parameter): past it the ``.part``
  stays, to resume. A body longer than expected (the manifest's ``size_bytes`` or the server's
  Content-Length, whichever is smaller) is stopped and its ``.part`` removed; a ``.part`` already
  longer than ``size_bytes``, or a ``206`` reply starting elsewhere than asked, restarts from zero.
* **Atomic unpack.** Archives are extracted into a hidden temporary directory next to the
  destination, member paths checked (no absolute paths, no ``..``, no links leaving the tree),
  the unpacked size capped (default 20x the archive, at least 256 MiB: zip and tar bombs),
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
import urllib.response
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from bench.errors import UserError

CHUNK_BYTES = 1 << 20
#: default deadline of one download: at least this long, or the expected size at this rate
DEADLINE_MIN_S = 600.0
DEADLINE_MIN_RATE_BPS = 100_000
#: an archive may unpack to at most this many times its own size (and always to this floor)
UNPACK_MAX_RATIO = 20
UNPACK_MIN_CAP_BYTES = 256 << 20
#: what each archive member costs against that cap on top of its data (one tar header)
MEMBER_OVERHEAD_BYTES = 512
USER_AGENT = "bench-codec-harness/0.1 (+https://github.com/; dataset downloader)"

#: what ``urllib.request.urlopen`` returns: an HTTPResponse for http(s), an addinfourl for file:// and ftp://
_Response = http.client.HTTPResponse | urllib.response.addinfourl


class DownloadError(UserError, RuntimeError):
    """A download that could not complete; the message names the URL and what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the published digest."""


class UnpackError(DownloadError):
    """The archive is corrupt or unsafe; nothing was unpacked."""


class TransferAborted(DownloadError):
    """A transfer stopped on purpose (past its deadline, or longer than expected); not retried."""


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
        """Whether the host publishes a digest (md5 or sha256) for the file."""
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


def _bar(total: int | None, desc: str, enabled: bool) -> Any:
    """A byte-counting tqdm progress bar (a silent one when not ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, dynamic_ncols=True, leave=False)


def _open(url: str, start: int, timeout_s: float) -> _Response:
    """GET ``url``, asking for the bytes from ``start`` on (a Range header) when ``start`` > 0."""
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)


def default_deadline_s(expected_bytes: int | None) -> float:
    """The default time limit of one download: ``DEADLINE_MIN_S``, or longer for a big file
    (its expected size at ``DEADLINE_MIN_RATE_BPS``)."""
    return max(DEADLINE_MIN_S, (expected_bytes or 0) / DEADLINE_MIN_RATE_BPS)


def _announced_total(resp: _Response, have: int) -> int | None:
    """The file size the server's reply implies (bytes already held + Content-Length), if it says."""
    length = resp.headers.get("Content-Length")
    if length is None:
        return None
    try:
        return have + int(length)
    except ValueError:
        return None


def _range_start(resp: _Response) -> int | None:
    """The first byte of a ``206`` reply, from ``Content-Range: bytes S-E/T`` (None when absent)."""
    value = resp.headers.get("Content-Range") or ""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


@dataclass
class _Transfer:
    """One ``download_file`` call: the ``.part`` file, the deadline and the size it must not pass."""

    resource: Resource
    part: Path
    deadline_s: float | None
    timeout_s: float
    progress: bool
    on_chunk: Callable[[int], None] | None
    started: float = field(default_factory=time.monotonic)
    expected: int | None = None  # the size the finished file should have, once known

    def __post_init__(self) -> None:
        self.expected = self.resource.size_bytes

    def have(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0

    def limit_s(self) -> float:
        return self.deadline_s if self.deadline_s is not None else default_deadline_s(self.expected)

    def check_deadline(self) -> None:
        """Raise TransferAborted once the whole call has run past its deadline (the ``.part`` stays)."""
        elapsed = time.monotonic() - self.started
        if elapsed > self.limit_s():
            raise TransferAborted(
                f"{self.resource.filename}: not complete after {elapsed:.1f} s (deadline {self.limit_s():g} s, "
                f"{self.have()} bytes so far): the server is too slow; rerun the same command to resume")

    def remaining_s(self) -> float:
        return self.limit_s() - (time.monotonic() - self.started)

    def socket_timeout_s(self) -> float:
        """The per-read timeout: ``timeout_s``, but never past the deadline by much."""
        return max(0.05, min(self.timeout_s, self.remaining_s()))

    def oversize(self, message: str) -> TransferAborted:
        """Remove the ``.part`` (its bytes are not the expected file's) and say why."""
        self.part.unlink(missing_ok=True)
        return TransferAborted(f"{self.resource.filename}: {message}; stopped, and the partial file was removed")

    def start_offset(self, resp: _Response, have: int) -> int:
        """Where the reply's body starts in the file: 0 when the server ignored the Range header."""
        if not have:
            return 0
        status = getattr(resp, "status", 200)
        if status == 200:
            return 0
        start = _range_start(resp)
        if status == 206 and start is not None and start != have:
            self.part.unlink(missing_ok=True)
            raise DownloadError(f"asked for bytes from {have}, the server sent bytes from {start}; restarting")
        return have

    def total_for(self, resp: _Response, have: int) -> int | None:
        """The size to stop at: the smaller of the announced and the manifest's size, whichever are known."""
        announced, manifest = _announced_total(resp, have), self.resource.size_bytes
        if announced is not None and manifest is not None and announced > manifest:
            raise self.oversize(f"the server announces {announced} bytes, more than the {manifest} expected "
                                f"(from {self.resource.url})")
        known = [n for n in (announced, manifest) if n is not None]
        if known:
            self.expected = min(known)
        return min(known) if known else None

    def stream(self, resp: _Response, have: int, total: int | None) -> int:
        """Append the body to the ``.part``, never past ``total``, within the deadline; bytes held after."""
        read = getattr(resp, "read1", resp.read)  # read1: whatever arrived, so a trickle cannot stall the checks
        bar = _bar(total, self.resource.filename, self.progress)
        bar.update(have)
        try:
            with open(self.part, "ab" if have else "wb") as out:
                for block in iter(lambda: read(CHUNK_BYTES), b""):
                    if total is not None and have + len(block) > total:
                        break
                    out.write(block)
                    have += len(block)
                    bar.update(len(block))
                    if self.on_chunk is not None:
                        self.on_chunk(have)
                    self.check_deadline()
                else:
                    return have
        finally:
            bar.close()
        raise self.oversize(f"the server sent more than the {total} bytes expected")

    def attempt(self, url: str) -> None:
        """One request: resume from the ``.part``; raise DownloadError when the body ends early."""
        have = self.have()
        with _open(url, have, self.socket_timeout_s()) as resp:
            have = self.start_offset(resp, have)
            total = self.total_for(resp, have)
            have = self.stream(resp, have, total)
        if total is not None and have < total:
            raise DownloadError(f"connection closed at {have} of {total} bytes")


def _drop_oversized_part(part: Path, resource: Resource) -> None:
    """A ``.part`` already longer than the published size cannot become the file: start over."""
    if resource.size_bytes is not None and part.exists() and part.stat().st_size > resource.size_bytes:
        part.unlink()


def _http_error(exc: urllib.error.HTTPError, transfer: _Transfer, url: str, dest_dir: Path) -> str:
    """What an HTTP error means: ``"done"`` (a 416 on a complete ``.part``), ``"next"`` (a 404: try the
    next mirror), ``"retry"`` (5xx) or ``"fail"``; raises DownloadError with advice on 401/403."""
    if exc.code == 416 and transfer.have():  # nothing left to fetch: the .part is already complete
        return "done"
    name = transfer.resource.filename
    if exc.code in (401, 403):
        raise DownloadError(
            f"{url}: HTTP {exc.code} (access denied). Some corpora need you to request access on the "
            f"host's page first; download {name} by hand into {dest_dir} and rerun "
            f"this command to verify and unpack it.") from exc
    if exc.code == 404:
        return "next"
    return "retry" if exc.code >= 500 else "fail"


def _transfer_with_retries(transfer: _Transfer, urls: tuple[str, ...], retries: int, dest_dir: Path) -> None:
    """Run attempts (mirrors on 404, backoff on errors) until the ``.part`` is complete or give up."""
    errors: list[str] = []
    attempt = url_index = 0
    while True:
        transfer.check_deadline()
        url = urls[url_index]
        try:
            transfer.attempt(url)
            return
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code}")
            verdict = _http_error(exc, transfer, url, dest_dir)
            if verdict == "done":
                return
            if verdict == "next" and url_index + 1 < len(urls):
                url_index += 1
                continue
            if verdict in ("next", "fail"):
                raise DownloadError(f"cannot download {transfer.resource.filename}: {'; '.join(errors)}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException, DownloadError) as exc:
            if isinstance(exc, (ChecksumError, UnpackError, TransferAborted)):
                raise
            errors.append(f"{url}: {exc}")
        attempt += 1
        if attempt > retries:
            raise DownloadError(f"cannot download {transfer.resource.filename} after {retries} retries "
                                f"({'; '.join(errors[-3:])}); rerun the same command to resume from "
                                f"{transfer.have()} bytes")
        time.sleep(max(0.0, min(30.0, 0.5 * 2 ** (attempt - 1), transfer.remaining_s())))


def download_file(resource: Resource, dest_dir: str | Path, *, progress: bool = True, retries: int = 5,
                  timeout_s: float = 60.0, verify: bool = True,
                  on_chunk: Callable[[int], None] | None = None, deadline_s: float | None = None) -> Path:
    """Fetch ``resource`` into ``dest_dir/filename``, resuming a previous ``.part``; verify; return the path.

    An already complete, verified file is returned as is. ``on_chunk(bytes_so_far)`` is called after
    each block written (tests use it to simulate an interruption). ``timeout_s`` bounds each socket
    read; ``deadline_s`` bounds the whole call, retries included (default: :func:`default_deadline_s`
    of the expected size); past it the ``.part`` stays, to resume. A body longer than expected (the
    manifest's ``size_bytes`` or the server's Content-Length) is stopped and its ``.part`` removed.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / resource.filename
    part = dest_dir / (resource.filename + ".part")
    if final.is_file():
        if verify:
            verify_checksum(final, resource, progress=progress)
        return final
    _drop_oversized_part(part, resource)
    transfer = _Transfer(resource, part, deadline_s, timeout_s, progress, on_chunk)
    _transfer_with_retries(transfer, (resource.url, *resource.mirrors), retries, dest_dir)
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


def unpack_cap_bytes(archive_bytes: int) -> int:
    """The most an archive of ``archive_bytes`` may unpack to: ``UNPACK_MAX_RATIO`` times its size,
    never less than ``UNPACK_MIN_CAP_BYTES`` (audio barely compresses; a bomb compresses 1000:1)."""
    return max(UNPACK_MIN_CAP_BYTES, UNPACK_MAX_RATIO * archive_bytes)


class _Budget:
    """The unpacked bytes an archive may still write; members are charged before they are extracted."""

    def __init__(self, archive: Path, cap_bytes: int) -> None:
        self.archive, self.cap, self.used = archive, cap_bytes, 0

    def charge(self, name: str, size: int) -> None:
        """Count a member (its data + ``MEMBER_OVERHEAD_BYTES``); UnpackError once past the cap."""
        self.used += max(0, size) + MEMBER_OVERHEAD_BYTES
        if self.used > self.cap:
            raise UnpackError(
                f"{self.archive.name}: unpacks to more than {self.cap} bytes (reached at member {name!r}), over "
                f"{self.cap / max(1, self.archive.stat().st_size):.0f}x its own size; refusing to unpack "
                f"(a damaged or malicious archive)")


def _extract_tar(archive: Path, into: Path, budget: _Budget) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                _check_member_path(member.name, archive)
                if member.issym() or member.islnk():
                    _check_member_path(str(PurePosixPath(member.name).parent / member.linkname), archive)
                if member.isdev():
                    raise UnpackError(f"{archive.name}: device file {member.name!r} in archive")
                budget.charge(member.name, member.size if member.isfile() else 0)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the stdlib's own safety net too
                    tf.extract(member, into, set_attrs=False, filter="data")
                else:
                    tf.extract(member, into, set_attrs=False)
    except UnpackError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # zlib errors surface as these
        raise UnpackError(f"{archive.name}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from exc


def _extract_zip(archive: Path, into: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():  # zipfile never writes more than a member's declared size
                _check_member_path(info.filename, archive)
                budget.charge(info.filename, info.file_size)
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


def unpack_archive(archive: str | Path, dest: str | Path, *, max_unpacked_bytes: int | None = None) -> list[str]:
    """Extract ``archive`` (.tar, .tar.gz, .tgz, .tar.bz2, .zip) into ``dest``, all or nothing.

    Refuses (UnpackError, nothing unpacked) an archive whose members add up to more than
    ``max_unpacked_bytes`` (default :func:`unpack_cap_bytes` of the archive's size).
    Returns the top-level names it put there.
    """
    archive, dest = Path(archive), Path(dest)
    cap = max_unpacked_bytes if max_unpacked_bytes is not None else unpack_cap_bytes(archive.stat().st_size)
    budget = _Budget(archive, cap)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".unpack-{archive.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp, budget)
        else:
            _extract_tar(archive, tmp, budget)
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
    """What one successful fetch got: source URL, size, digests (and which were checked), where it went."""

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
    """Where the receipts of the downloads under the data root ``root`` are kept."""
    return Path(root) / ".bench" / "receipts"


def read_receipt(root: str | Path, name: str) -> dict[str, Any] | None:
    """The receipt ``name`` as a dict, or None when absent or unreadable (it is a record, not a requirement)."""
    path = receipts_dir(root) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def fetch(resource: Resource, root: str | Path, receipt_name: str, *, progress: bool = True,
          keep_archive: bool = False, downloads_dir: str | Path | None = None, force: bool = False,
          deadline_s: float | None = None) -> Receipt | None:
    """Download (resuming), verify and unpack ``resource`` under ``root``; write a receipt.

    Returns None when ``resource.provides`` already exists and ``force`` is false.
    Archives are downloaded to ``downloads_dir`` (default ``<root>/.bench/downloads``), deleted after
    a successful unpack unless ``keep_archive``. ``deadline_s``: see :func:`download_file`.
    """
    root = Path(root)
    if resource.provides and (root / resource.provides).exists() and not force:
        return None
    downloads = Path(downloads_dir) if downloads_dir else root / ".bench" / "downloads"
    path = download_file(resource, downloads, progress=progress, verify=False, deadline_s=deadline_s)
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
