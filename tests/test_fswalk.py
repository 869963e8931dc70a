"""The one directory walker: no symlink loops, each real file once, stable order, hidden skipped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.fswalk import list_audio_files

EXTS = (".wav", ".flac")


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rels(root: Path, exts=EXTS, **kw) -> list[str]:
    return [p.relative_to(root).as_posix() for p in list_audio_files(root, exts, **kw)]


def test_links_back_into_the_tree_are_not_followed(tmp_path):
    root = tmp_path / "root"
    _touch(root / "a.wav")
    _touch(root / "sub" / "b.wav")
    (root / "sub" / "up").symlink_to("..")  # an ancestor: a loop
    (root / "self").symlink_to(".")
    (root / "alias").symlink_to("sub")  # a sibling inside the tree: listed under its real name
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "top").symlink_to(root)
    assert _rels(root) == ["a.wav", "sub/b.wav"]


def test_link_to_a_folder_containing_the_tree_is_a_loop(tmp_path):
    root = tmp_path / "root"
    _touch(root / "a.wav")
    _touch(tmp_path / "beside.wav")
    (root / "parent").symlink_to(tmp_path)  # outside, but it contains the tree itself
    assert _rels(root) == ["a.wav"]


def test_outside_folder_followed_once_even_with_its_own_loop(tmp_path):
    root, ext = tmp_path / "root", tmp_path / "ext"
    _touch(root / "a.wav")
    _touch(ext / "inner" / "e.wav")
    (ext / "inner" / "back").symlink_to(ext)  # a loop inside the outside folder
    (root / "link1").symlink_to(ext)
    (root / "link2").symlink_to(ext)  # the same folder again: not walked twice
    assert _rels(root) == ["a.wav", "link1/inner/e.wav"]


def test_each_real_file_once_preferring_its_own_name(tmp_path):
    root = tmp_path / "root"
    _touch(root / "sub" / "x.wav")
    (root / "a_alias.wav").symlink_to(root / "sub" / "x.wav")
    (root / "b_alias.wav").symlink_to("sub/x.wav")
    os.link(root / "sub" / "x.wav", root / "sub" / "y.wav")  # a hard link: the same file
    outside = _touch(tmp_path / "o.wav")
    (root / "l1.wav").symlink_to(outside)
    (root / "l2.wav").symlink_to(outside)
    (root / "broken.wav").symlink_to(tmp_path / "nothing.wav")
    assert _rels(root) == ["l1.wav", "sub/x.wav"]


def test_order_hidden_and_extensions(tmp_path):
    root = tmp_path / "root"
    for rel in ("a-b/x.wav", "a/x.WAV", "a/z.flac", "b.mp3", ".hidden/h.wav", "a/._fork.wav", "c.wav"):
        _touch(root / rel, rel.encode())  # distinct contents are irrelevant: distinct inodes
    assert _rels(root) == ["a/x.WAV", "a/z.flac", "a-b/x.wav", "c.wav"]  # component-wise order
    assert _rels(root, skip_hidden=False) == [".hidden/h.wav", "a/._fork.wav", "a/x.WAV", "a/z.flac",
                                              "a-b/x.wav", "c.wav"]
    assert list_audio_files(tmp_path / "missing", EXTS) == []


def test_dataset_helper_and_training_scan_use_the_walker(tmp_path):
    from bench.datasets._common import audio_files
    from bench.train.data import scan

    root = tmp_path / "clips"
    root.mkdir()
    t = np.arange(4000) / 16000
    sf.write(root / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    (root / "loop").symlink_to(root)
    (root / "again.wav").symlink_to(root / "tone.wav")
    assert [p.name for p in audio_files(root, (".wav",))] == ["tone.wav"]
    files = scan([str(root)])
    assert [Path(f.path).name for f in files] == ["tone.wav"]


def test_inode_zero_falls_back_to_the_real_path(tmp_path):
    """Some filesystems (CIFS noserverino, some FUSE) report inode 0: files must not collapse into one."""
    from bench.fswalk import _identity

    a, b = _touch(tmp_path / "a.wav"), _touch(tmp_path / "b.wav")
    (tmp_path / "link.wav").symlink_to(a)
    fake = os.stat_result((0o100644, 0, 7, 1, 0, 0, 1, 0, 0, 0))
    ids = [_identity(fake, str(p)) for p in (a, b, tmp_path / "link.wav")]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    assert _identity(os.stat(a), str(a)) == (os.stat(a).st_dev, os.stat(a).st_ino)
