"""Lists of reference/degraded file pairs, in the formats the field already writes.

``bench score`` reads its pairs through this module; every reader returns :class:`PairSpec`\\ s whose
files exist (checked here, before any scoring), or raises :class:`PairListError` (one line, exit 2)
naming the file and line.

Formats
-------
* **CSV** (``--pairs LIST.csv``): a header row with columns ``ref`` and ``deg`` and optional ``id``,
  ``domain``, ``transcript``; other columns are ignored. A UTF-8 byte-order mark is accepted.
* **JSON Lines** (``--pairs LIST.jsonl``, ``.json-lines``, ``.jsonlines``, ``.ndjson``): one JSON
  object per line with the same keys; blank lines are ignored, other keys too.
* **Kaldi/ESPnet/VERSA scp** (``--ref-scp REF.scp --deg-scp DEG.scp``): ``id path`` lines
  (whitespace-separated, the first token is the id, the rest of the line the path, which may hold
  spaces); blank lines and lines starting with ``#`` are ignored. The two lists are joined by id.
  Kaldi ``wav.scp`` pipe entries (``id sox ... |``) and archive offsets (``foo.ark:1234``) are
  refused: extract the audio to files first. A text scp (``id transcript`` lines) adds transcripts.
* **Two folders** (``--ref-dir A --deg-dir B``): audio files paired by their path relative to each
  folder without its extension (``A/spk1/u1.flac`` pairs with ``B/spk1/u1.wav``; the id is
  ``spk1/u1``), walked by :func:`bench.fswalk.list_audio_files` (hidden files skipped, no symlink
  loops). Two files of one folder with the same path but for the extension are an error.

Relative paths in a list file resolve against **the list file's folder**, not the working
directory. Ids in CSV and JSON Lines lists default to the degraded file's name without extension;
a repeated id there gets ``#2``, ``#3``... (the output needs unique ids). In scp lists and folders
the id is the key the two sides are joined by, so a repeated id is an error.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from bench.errors import UserError
from bench.fswalk import list_audio_files
from bench.types import DOMAINS

#: file name endings read as JSON Lines by :func:`read_pairs_file` (anything else is read as CSV)
JSONL_SUFFIXES = (".jsonl", ".json-lines", ".jsonlines", ".ndjson")

#: how many ids an unpaired-ids message names before "..."
_SHOW_IDS = 5

_ARK_OFFSET = re.compile(r"\.ark:\d+(\[[^\]]*\])?$")


class PairListError(UserError):
    """A pairs list (or folder pair) that cannot be used; the message names the file and line."""


@dataclass
class PairSpec:
    """One pair to score: an id, the reference and degraded files, the domain, an optional transcript."""

    id: str
    ref: str
    deg: str
    domain: str
    transcript: str | None = None


@dataclass
class PairList:
    """The pairs a list gave, and the ids left out because only one side had them (``--allow-unpaired``)."""

    pairs: list[PairSpec]
    unpaired: dict[str, list[str]] = field(default_factory=dict)  # "only in REF.scp" -> ids, in list order

    @property
    def n_unpaired(self) -> int:
        """How many ids were left out for want of a partner."""
        return sum(len(ids) for ids in self.unpaired.values())

    def note(self) -> str | None:
        """One line counting the left-out ids by side (with the first few), or None when there are none."""
        if not self.n_unpaired:
            return None
        return f"skipped {self.n_unpaired} unpaired id(s): {_describe_unpaired(self.unpaired)}"


def check_file(text: str) -> str:
    """``text`` if it names an existing, readable regular file; ValueError with the reason otherwise."""
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(f"no such file: {text}")
    if not path.is_file():
        raise ValueError(f"not a file: {text}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {text}")
    return str(path)


def _listed_file(where: str, text: str, base: Path) -> str:
    """The file a list entry names (a relative path is under ``base``); PairListError naming ``where``."""
    path = Path(text).expanduser()
    try:
        return check_file(str(path if path.is_absolute() else base / path))
    except ValueError as exc:
        raise PairListError(f"{where}: {exc}") from None


def _check_domain(where: str, domain: str) -> str:
    """``domain`` if it is one of :data:`bench.types.DOMAINS`; PairListError otherwise."""
    if domain not in DOMAINS:
        raise PairListError(f"{where}: unknown domain {domain!r}; choose from {DOMAINS}")
    return domain


def _open_text(path: str, kind: str) -> TextIO:
    """A list file opened as UTF-8 text (BOM accepted); PairListError when it is missing or unreadable."""
    try:
        return open(path, newline="", encoding="utf-8-sig")  # -sig: spreadsheets write a BOM
    except FileNotFoundError:
        raise PairListError(f"{path}: {kind} file not found") from None
    except OSError as exc:
        raise PairListError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_error(path: str, expected: str, exc: Exception) -> PairListError:
    """A decoding, CSV or OS error met while reading a list, as one PairListError line."""
    if isinstance(exc, UnicodeDecodeError):
        return PairListError(f"{path}: not UTF-8 text (byte {exc.start}); expected {expected}")
    if isinstance(exc, csv.Error):
        return PairListError(f"{path}: malformed CSV ({exc})")
    return PairListError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})")


def _unique_ids(pairs: list[PairSpec]) -> list[PairSpec]:
    """Give repeated ids ``#2``, ``#3``... so every output row's id is unique (derived ids can collide)."""
    seen: dict[str, int] = {}
    for pair in pairs:
        seen[pair.id] = seen.get(pair.id, 0) + 1
        if seen[pair.id] > 1:
            pair.id = f"{pair.id}#{seen[pair.id]}"
    return pairs


def _pair_from_fields(where: str, row: dict[str, str], base: Path, default_domain: str) -> PairSpec:
    """One CSV row or JSON object (keys lower-cased, values stripped text) as a PairSpec, files checked."""
    if not row.get("ref") or not row.get("deg"):
        raise PairListError(f"{where}: empty ref or deg")
    domain = _check_domain(where, row.get("domain") or default_domain)
    ref, deg = (_listed_file(f"{where}: {col}", row[col], base) for col in ("ref", "deg"))
    return PairSpec(id=row.get("id") or Path(row["deg"]).stem, ref=ref, deg=deg, domain=domain,
                    transcript=row.get("transcript") or None)


# --- CSV ----------------------------------------------------------------------------------------

def _csv_cell(where: str, value: Any) -> str:
    """One CSV cell as stripped text; a row longer than the header is a PairListError."""
    if isinstance(value, list):  # csv.DictReader puts surplus fields in a list under the key None
        raise PairListError(f"{where}: {len(value)} more field(s) than the header has columns")
    return (value or "").strip()


def _parse_csv(path: str, f: TextIO, default_domain: str) -> list[PairSpec]:
    """Rows of an open pairs CSV (header checked) as PairSpecs."""
    reader = csv.DictReader(f)
    fields = {(c or "").strip().lower() for c in (reader.fieldnames or [])}
    if not {"ref", "deg"} <= fields:
        raise PairListError(f"{path}: needs a header with columns 'ref' and 'deg' (got {sorted(fields)})")
    base = Path(path).resolve().parent
    pairs = []
    for raw in reader:
        where = f"{path}:{reader.line_num}"
        row = {(k or "").strip().lower(): _csv_cell(where, v) for k, v in raw.items()}
        pairs.append(_pair_from_fields(where, row, base, default_domain))
    return pairs


def read_pairs_csv(path: str, default_domain: str = "general") -> list[PairSpec]:
    """The pairs a CSV lists (columns ``ref,deg[,id,domain,transcript]``), every file checked."""
    with _open_text(path, "pairs") as f:
        try:
            pairs = _parse_csv(path, f, default_domain)
        except (UnicodeDecodeError, csv.Error, OSError) as exc:
            raise _read_error(path, "a CSV file", exc) from None
    if not pairs:
        raise PairListError(f"{path}: no pairs")
    return _unique_ids(pairs)


# --- JSON Lines ---------------------------------------------------------------------------------

def _json_text(where: str, key: str, value: Any) -> str:
    """A JSON value of a pairs object as stripped text (ids may be integers); PairListError otherwise."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if key == "id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise PairListError(f"{where}: {key!r} must be a string, got {type(value).__name__}")


def _json_pair(where: str, text: str, base: Path, default_domain: str) -> PairSpec:
    """One JSON Lines line as a PairSpec; PairListError naming the line when it is not a usable object."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PairListError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise PairListError(f"{where}: expected a JSON object with keys 'ref' and 'deg', got {type(obj).__name__}")
    row = {str(k).strip().lower(): v for k, v in obj.items()}
    fields = {k: _json_text(where, k, row.get(k)) for k in ("ref", "deg", "id", "domain", "transcript")}
    if not fields["ref"] or not fields["deg"]:
        raise PairListError(f"{where}: needs non-empty 'ref' and 'deg' (keys: {sorted(row)})")
    return _pair_from_fields(where, fields, base, default_domain)


def read_pairs_jsonl(path: str, default_domain: str = "general") -> list[PairSpec]:
    """The pairs a JSON Lines file lists (objects with ``ref``, ``deg`` and optional ``id``, ``domain``,
    ``transcript``), every file checked; blank lines are skipped."""
    base = Path(path).resolve().parent
    pairs = []
    with _open_text(path, "pairs") as f:
        try:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    pairs.append(_json_pair(f"{path}:{line_no}", line, base, default_domain))
        except (UnicodeDecodeError, OSError) as exc:
            raise _read_error(path, "a JSON Lines file", exc) from None
    if not pairs:
        raise PairListError(f"{path}: no pairs")
    return _unique_ids(pairs)


def read_pairs_file(path: str, default_domain: str = "general") -> list[PairSpec]:
    """A pairs list chosen by its name: JSON Lines for :data:`JSONL_SUFFIXES`, CSV otherwise.

    A ``.json`` file is refused with a hint: one JSON document is not a list of lines.
    """
    name = path.lower()
    if name.endswith(JSONL_SUFFIXES):
        return read_pairs_jsonl(path, default_domain)
    if name.endswith(".json"):
        raise PairListError(f"{path}: a .json file; write one JSON object per line and name it .jsonl "
                            "(or give a CSV with columns ref,deg)")
    return read_pairs_csv(path, default_domain)


# --- Kaldi-style scp ----------------------------------------------------------------------------

def _scp_lines(path: str, kind: str) -> Iterator[tuple[int, str, str]]:
    """``(line number, id, rest of the line)`` of an scp file; blank lines and ``#`` comments skipped."""
    with _open_text(path, kind) as f:
        try:
            for line_no, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split(maxsplit=1)
                yield line_no, parts[0], parts[1].strip() if len(parts) > 1 else ""
        except (UnicodeDecodeError, OSError) as exc:
            raise _read_error(path, f"a {kind} file of 'id ...' lines", exc) from None


def _scp_path(where: str, utt: str, rest: str) -> str:
    """The path of one scp entry; PairListError for an empty one, a pipe command or an archive offset."""
    if not rest:
        raise PairListError(f"{where}: id {utt!r} has no path")
    if rest.endswith("|"):
        raise PairListError(f"{where}: id {utt!r} is a Kaldi pipe command ('{rest}'); commands are not run, "
                            "extract the audio to files first and list those")
    if rest.startswith(("ark:", "scp:")) or _ARK_OFFSET.search(rest):
        raise PairListError(f"{where}: id {utt!r} points into a Kaldi archive ('{rest}'); ark offsets are "
                            "not supported, extract the audio to files first and list those")
    return rest


def _keyed(path: str, entries: Iterable[tuple[int, str, str]]) -> dict[str, str]:
    """``id -> value`` of scp entries in list order; PairListError for a repeated id."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line_no, utt, value in entries:
        if utt in out:
            raise PairListError(f"{path}:{line_no}: duplicate id {utt!r} (first on line {first_line[utt]})")
        out[utt] = value
        first_line[utt] = line_no
    return out


def read_scp(path: str) -> dict[str, str]:
    """``id -> file`` of an scp list (paths relative to its folder resolved, every file checked), in order."""
    base = Path(path).resolve().parent

    def entries() -> Iterator[tuple[int, str, str]]:
        for line_no, utt, rest in _scp_lines(path, "scp"):
            where = f"{path}:{line_no}"
            yield line_no, utt, _listed_file(where, _scp_path(where, utt, rest), base)

    out = _keyed(path, entries())
    if not out:
        raise PairListError(f"{path}: no entries")
    return out


def read_text_scp(path: str) -> dict[str, str]:
    """``id -> transcript`` of a Kaldi ``text`` file (``id word word ...``; whitespace runs collapsed).

    An id with no words maps to ``""`` (no transcript for WER/CER).
    """
    out = _keyed(path, ((n, utt, " ".join(rest.split())) for n, utt, rest in _scp_lines(path, "text")))
    if not out:
        raise PairListError(f"{path}: no entries")
    return out


def _describe_unpaired(unpaired: dict[str, list[str]]) -> str:
    """``3 only in ref.scp (a, b, c); 1 only in deg.scp (x)``, naming at most a few ids per side."""
    parts = []
    for side, ids in unpaired.items():
        if ids:
            shown = ", ".join(ids[:_SHOW_IDS]) + (", ..." if len(ids) > _SHOW_IDS else "")
            parts.append(f"{len(ids)} only in {side} ({shown})")
    return "; ".join(parts)


def join_by_id(refs: dict[str, str], degs: dict[str, str], names: tuple[str, str], default_domain: str,
               *, allow_unpaired: bool = False) -> PairList:
    """Pairs of the ids both sides have (in the reference side's order); ``names`` label the sides.

    Ids on one side only are a PairListError counting them (the first few named) unless
    ``allow_unpaired``, which leaves them out and records them in :attr:`PairList.unpaired`.
    """
    unpaired = {names[0]: [i for i in refs if i not in degs], names[1]: [i for i in degs if i not in refs]}
    result = PairList([PairSpec(id=i, ref=refs[i], deg=degs[i], domain=default_domain) for i in refs if i in degs],
                      {side: ids for side, ids in unpaired.items() if ids})
    if not result.pairs:
        raise PairListError(f"no id is in both {names[0]} and {names[1]}: {_describe_unpaired(unpaired)}")
    if result.unpaired and not allow_unpaired:
        raise PairListError(f"{result.n_unpaired} id(s) are not in both lists: {_describe_unpaired(unpaired)}; "
                            "pair them, or pass --allow-unpaired to score the rest")
    return result


def pairs_from_scp(ref_scp: str, deg_scp: str, default_domain: str = "general", *,
                   allow_unpaired: bool = False) -> PairList:
    """Pairs of a reference and a degraded scp list joined by id (see :func:`join_by_id`)."""
    _check_domain("--domain", default_domain)
    return join_by_id(read_scp(ref_scp), read_scp(deg_scp), (ref_scp, deg_scp), default_domain,
                      allow_unpaired=allow_unpaired)


# --- two folders --------------------------------------------------------------------------------

def _inside(path: Path, folder: Path) -> bool:
    """Whether real path ``path`` lies under real folder ``folder``."""
    return path == folder or folder in path.parents


def audio_by_stem(root: str, extensions: Iterable[str], exclude: Path | None = None) -> dict[str, str]:
    """``relative path without extension -> file`` for the audio files under ``root``, sorted.

    Files under ``exclude`` (the other folder, when it lies inside this one) are left out. Two files
    that differ only by extension (``a.wav`` and ``a.flac``) are a PairListError: which to pair is unclear.
    """
    root_path = Path(root)
    found: dict[str, list[Path]] = {}
    for file in list_audio_files(root_path, extensions):
        if exclude is not None and _inside(Path(os.path.realpath(file)), exclude):
            continue
        stem = file.relative_to(root_path).with_suffix("").as_posix()
        found.setdefault(stem, []).append(file)
    for stem, files in found.items():
        if len(files) > 1:
            names = " and ".join(f.name for f in files)
            raise PairListError(f"{root}: {stem!r} is ambiguous ({names}); keep one file per name")
    if not found:
        raise PairListError(f"{root}: no audio files (looked for {', '.join(extensions)})")
    return {stem: str(files[0]) for stem, files in found.items()}


def pairs_from_dirs(ref_dir: str, deg_dir: str, extensions: Iterable[str], default_domain: str = "general", *,
                    allow_unpaired: bool = False) -> PairList:
    """Pairs of the audio files under two folders with the same relative path but for the extension.

    The id is that relative path without extension (``spk1/u1``). When one folder lies inside the
    other, the inner one's files are not part of the outer one's side.
    """
    _check_domain("--domain", default_domain)
    extensions = tuple(extensions)
    ref_real, deg_real = Path(os.path.realpath(ref_dir)), Path(os.path.realpath(deg_dir))
    if ref_real == deg_real:
        raise PairListError(f"{ref_dir} and {deg_dir} are the same folder; give the references and the "
                            "degraded files in two folders")
    refs = audio_by_stem(ref_dir, extensions, deg_real if _inside(deg_real, ref_real) else None)
    degs = audio_by_stem(deg_dir, extensions, ref_real if _inside(ref_real, deg_real) else None)
    return join_by_id(refs, degs, (ref_dir, deg_dir), default_domain, allow_unpaired=allow_unpaired)


def add_transcripts(pairs: list[PairSpec], transcripts: dict[str, str], source: str) -> int:
    """Give each pair the transcript ``transcripts`` holds for its id; returns how many got none.

    A pair that already has a different transcript (a list's ``transcript`` column) is a
    PairListError: two sources disagree. An empty transcript counts as none.
    """
    without = 0
    for pair in pairs:
        text = transcripts.get(pair.id) or None
        if text is None:
            without += pair.transcript is None
            continue
        if pair.transcript is not None and pair.transcript != text:
            raise PairListError(f"{source}: the transcript of id {pair.id!r} differs from the one its pairs "
                                "list gives; keep one source")
        pair.transcript = text
    return without
