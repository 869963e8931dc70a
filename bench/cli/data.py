"""``bench data ls|download|verify [NAME] [--split S] [--root DIR]``: get the corpora and check them.

* ``ls``: every dataset, its splits, where it looks (the data root and where that came from) and
  which splits are present there.
* ``download NAME --split S``: fetch the public archive for a split (resumable, checksum verified,
  unpacked atomically; see ``bench.datasets.download``). ``--mirror URL`` fetches the same file
  names from another host; ``--keep-archive`` keeps the archive after unpacking.
* ``verify NAME --split S``: every item present and readable, counts against the official
  release, and the download receipt (URL and digests). Exit status 1 when something is wrong.

Options of a dataset (``--dataset-opt key=value``, as for ``bench run``) select variants, e.g.
``bench data download libritts --split test-other --dataset-opt variant=r`` for LibriTTS-R.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bench.cli.args import key_value
from bench.errors import UserError

if TYPE_CHECKING:
    from bench.datasets.base import Dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench data``."""
    p.add_argument("action", choices=["ls", "download", "verify"], help="what to do")
    p.add_argument("name", nargs="?", default=None, help="dataset name (see `bench data ls`)")
    p.add_argument("--split", default=None, help="split (default: the dataset's default split)")
    p.add_argument("--root", default=None, help="data root (else $BENCH_DATA_ROOT, the config file, or the default)")
    p.add_argument("--dataset-opt", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="dataset option (repeatable)")
    p.add_argument("--mirror", default=None, type=base_url, help="download from this base URL instead (same file names)")
    p.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive after unpacking")
    p.add_argument("--force", action="store_true", help="download and unpack again even if the data is present")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def base_url(text: str) -> str:
    """An http(s) or file URL to download from."""
    from urllib.parse import urlparse

    parts = urlparse(text)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise argparse.ArgumentTypeError(f"expected an http(s):// or file:// URL, got {text!r}")
    return text


def _dataset(name: str, options: dict[str, str]) -> Dataset:
    from bench.registry import DATASETS

    ds = DATASETS.get(name)
    if options:
        configure = getattr(ds, "configure", None)
        if configure is None:
            raise UserError(f"dataset {name!r} takes no options (got {sorted(options)})")
        ds = configure(**options)
    return ds


def _present(ds: Dataset, split: str, root: str | None) -> bool:
    from bench.datasets.base import DataMissingError

    try:
        if hasattr(ds, "locate"):
            ds.locate(split, root)
            return True
        return False
    except (DataMissingError, OSError, ValueError):
        return False


def _ls(args: argparse.Namespace) -> int:
    from bench.config import data_root, data_root_source
    from bench.registry import DATASETS

    print(f"data root: {data_root(args.root)}  (from {data_root_source(args.root)})")
    print(f"{'dataset':<10} {'download':<9} splits (+ = present under the data root)")
    for name, ds in DATASETS.items():
        if args.name and name != args.name:
            continue
        downloadable = hasattr(ds, "resources") and any(True for _ in ds.resources(ds.default_split))
        source = "public" if downloadable else ("built-in" if name == "demo" else "-")
        marks = []
        for split in ds.splits or (ds.default_split,):
            present = name == "demo" or _present(ds, split, args.root)
            marks.append(f"{'+' if present else ' '}{split}")
        print(f"{name:<10} {source:<9} {' '.join(marks)}")
    return 0


def _download(args: argparse.Namespace, ds: Dataset) -> int:
    if ds.name == "demo":
        from bench.datasets.demo import ensure_demo

        print(f"demo: generated in {ensure_demo(args.root)}")
        return 0
    if not hasattr(ds, "download"):
        print(f"error: {ds.name} has no download: {ds.description}", file=sys.stderr)
        return 2
    for line in ds.download(args.split, args.root, progress=not args.no_progress, keep_archive=args.keep_archive,
                            mirror=args.mirror, force=args.force):
        print(line)
    split = ds.check_split(args.split)
    print(f"next: bench data verify {ds.name} --split {split}" + (f" --root {args.root}" if args.root else ""))
    return 0


def _verify(args: argparse.Namespace, ds: Dataset) -> int:
    if hasattr(ds, "verify"):
        ok, lines = ds.verify(args.split, args.root)
    else:
        from bench.datasets._common import check_audio_file

        items = list(ds.items(args.split, args.root))
        bad = [f"{it.id}: {why}" for it in items if (why := check_audio_file(it.path, int(it.extra.get("stream_index", 0))))]
        ok, lines = not bad, [f"{ds.name}: {len(items)} items, {len(bad)} unreadable", *bad[:20]]
    for line in lines:
        print(line)
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


def main(args: argparse.Namespace) -> int:
    """``bench data ls|download|verify``."""
    if args.action == "ls":
        return _ls(args)
    if not args.name:
        raise UserError(f"bench data {args.action} needs a dataset name (see `bench data ls`)")
    ds = _dataset(args.name, dict(args.dataset_opt))
    return _download(args, ds) if args.action == "download" else _verify(args, ds)
