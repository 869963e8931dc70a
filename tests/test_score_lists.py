"""``bench score`` reads the lists the field already writes: Kaldi scp pairs, two folders, JSON Lines.

Every list form is scored end to end on small synthetic WAV/FLAC files and must give exactly the
values of scoring the same files one pair at a time (``bench score REF DEG``), ids kept. Bad lists
are one line on stderr and exit 2, before any scoring.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.cli import main as bench_main
from bench.pairs import PairListError, add_transcripts, pairs_from_scp, read_pairs_jsonl, read_text_scp

RATE = 16000
METRICS = "si_sdr,mel_distance"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``bench score ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        rc = bench_main(["score", *argv])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def signal(seed: int, duration_s: float = 0.5) -> np.ndarray:
    """Harmonic bursts plus a little noise (seeded)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * RATE)) / RATE
    env = (np.sin(2 * np.pi * 4 * t) > 0.1).astype(np.float64)
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((200, 450, 900), 1))
    return (0.2 * env * x + 0.005 * rng.standard_normal(t.shape)).astype(np.float32)


def degrade(x: np.ndarray, seed: int, noise: float) -> np.ndarray:
    return (x + noise * np.random.default_rng(seed + 100).standard_normal(x.shape)).astype(np.float32)


def write(path: Path, x: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if path.suffix == ".flac" else "FLOAT"
    sf.write(str(path), x, RATE, subtype=subtype)
    return path


def single(capsys, ref: Path, deg: Path, *extra: str) -> dict:
    """The metrics of one pair scored as REF DEG."""
    rc, out, err = run_cli(capsys, str(ref), str(deg), "--metrics", METRICS, "--json", *extra)
    assert rc == 0, err
    return json.loads(out)["metrics"]


def by_id(out: str) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads(out)}


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Three pairs: id -> (reference WAV, degraded WAV), degraded by different amounts of noise."""
    out = {}
    for k, utt in enumerate(["utt1", "utt2", "utt3"]):
        x = signal(k)
        out[utt] = (write(tmp_path / "ref" / f"{utt}.wav", x),
                    write(tmp_path / "deg files" / f"{utt} dec.wav", degrade(x, k, 0.01 * (k + 1))))
    return out


def write_scp(path: Path, entries: list[str]) -> Path:
    path.write_text("\n".join(entries) + "\n", encoding="utf-8")
    return path


# --- scp ----------------------------------------------------------------------------------------

def test_scp_pairs_equal_scoring_each_pair(tmp_path, corpus, capsys, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    # references by relative path (resolved against the scp's folder), with a comment and a blank line;
    # degraded files by absolute path with spaces, in another order
    ref_scp = write_scp(lists / "ref.scp", ["# references", ""] +
                        [f"{utt}   ../ref/{ref.name}" for utt, (ref, _) in corpus.items()])
    deg_scp = write_scp(lists / "deg.scp", [f"{utt}\t{deg}  " for utt, (_, deg) in reversed(corpus.items())])
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not depend on the working directory
    out_csv = tmp_path / "scores.csv"
    rc, out, err = run_cli(capsys, "--ref-scp", str(ref_scp), "--deg-scp", str(deg_scp), "--metrics", METRICS,
                           "--json", "--out", str(out_csv))
    assert rc == 0, err
    results = by_id(out)
    assert list(results) == ["utt1", "utt2", "utt3"]  # the reference list's order, ids kept
    for utt, (ref, deg) in corpus.items():
        assert results[utt]["metrics"] == single(capsys, ref, deg)
        assert Path(results[utt]["deg"]) == deg
    si = [results[u]["metrics"]["si_sdr"]["value"] for u in results]
    assert si[0] > si[1] > si[2]  # more noise, lower SI-SDR: the pairs were not mixed up
    with open(out_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["id"] for r in rows}) == ["utt1", "utt2", "utt3"] and len(rows) == 6


def test_scp_unpaired_ids_stop_or_are_skipped_and_counted(tmp_path, corpus, capsys):
    ref_scp = write_scp(tmp_path / "ref.scp", [f"{u} {r}" for u, (r, _) in corpus.items()] +
                        [f"extra{i} {corpus['utt1'][0]}" for i in range(7)])
    deg_scp = write_scp(tmp_path / "deg.scp", [f"{u} {d}" for u, (_, d) in list(corpus.items())[:2]] +
                        [f"lonely {corpus['utt1'][1]}"])
    argv = ["--ref-scp", str(ref_scp), "--deg-scp", str(deg_scp), "--metrics", METRICS, "--json"]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "9 id(s) are not in both lists" in err and "8 only in" in err and "1 only in" in err
    assert "utt3, extra0, extra1, extra2, extra3, ..." in err and "(lonely)" in err and "--allow-unpaired" in err
    rc, out, err = run_cli(capsys, *argv, "--allow-unpaired")
    assert rc == 0, err
    assert sorted(by_id(out)) == ["utt1", "utt2"]
    assert "note: skipped 9 unpaired id(s)" in err and "8 only in" in err


SCP_PROBLEMS = [
    ("duplicate-id", ["a {ref}", "b {ref}", "a {ref}"], ":3: duplicate id 'a' (first on line 1)"),
    ("pipe", ["a sox {ref} -t wav - |"], "pipe command"),
    ("ark-offset", ["a /data/raw_mfcc.ark:1234"], "ark offsets are not supported"),
    ("ark-prefix", ["a ark:/data/feats.ark"], "Kaldi archive"),
    ("no-path", ["a {ref}", "lonely"], ":2: id 'lonely' has no path"),
    ("missing-file", ["# c", "a {tmp}/gone.wav"], ":2: no such file"),
    ("folder", ["a {tmp}"], ":1: not a file"),
    ("empty", ["# nothing", ""], "no entries"),
]


@pytest.mark.parametrize("lines,needle", [c[1:] for c in SCP_PROBLEMS], ids=[c[0] for c in SCP_PROBLEMS])
def test_scp_problems_are_one_line_exit_2(tmp_path, corpus, capsys, monkeypatch, lines, needle):
    import bench.cli.score as score_mod

    monkeypatch.setattr(score_mod, "score_files", lambda *a, **k: pytest.fail("scored a bad scp list"))
    ref = corpus["utt1"][0]
    good = write_scp(tmp_path / "good.scp", [f"a {ref}"])
    bad = write_scp(tmp_path / "bad.scp", [ln.format(ref=ref, tmp=tmp_path) for ln in lines])
    for argv in (["--ref-scp", str(bad), "--deg-scp", str(good)], ["--ref-scp", str(good), "--deg-scp", str(bad)]):
        rc, _, err = run_cli(capsys, *argv, "--metrics", METRICS)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert needle in err and "bad.scp" in err, err


def test_scp_not_utf8_and_missing_list(tmp_path, corpus, capsys):
    good = write_scp(tmp_path / "good.scp", [f"a {corpus['utt1'][0]}"])
    binary = tmp_path / "bin.scp"
    binary.write_bytes(b"a \xff\xfe\x81\n")
    rc, _, err = run_cli(capsys, "--ref-scp", str(binary), "--deg-scp", str(good))
    assert rc == 2 and "UTF-8" in err and "bin.scp" in err
    rc, _, err = run_cli(capsys, "--ref-scp", str(tmp_path / "nope.scp"), "--deg-scp", str(good))
    assert rc == 2 and "nope.scp" in err and "no such file" in err


def test_text_scp_gives_transcripts(tmp_path, corpus, capsys, monkeypatch):
    import bench.cli.score as score_mod

    ref_scp = write_scp(tmp_path / "ref.scp", [f"{u} {r}" for u, (r, _) in corpus.items()])
    deg_scp = write_scp(tmp_path / "deg.scp", [f"{u} {d}" for u, (_, d) in corpus.items()])
    text = write_scp(tmp_path / "text", ["utt1 HELLO   WORLD", "utt2 GOOD MORNING", "other NOT LISTED"])
    seen = {}
    real = score_mod.score_files

    def spy(pair, *a, **k):
        seen[pair.id] = pair.transcript
        return real(pair, *a, **k)

    monkeypatch.setattr(score_mod, "score_files", spy)
    rc, out, err = run_cli(capsys, "--ref-scp", str(ref_scp), "--deg-scp", str(deg_scp), "--text-scp", str(text),
                           "--metrics", "si_sdr", "--json")
    assert rc == 0, err
    assert seen == {"utt1": "HELLO WORLD", "utt2": "GOOD MORNING", "utt3": None}
    assert "1 of 3 pair(s) have no transcript" in err
    # the library: a list's own transcript that disagrees is refused
    listed = pairs_from_scp(str(ref_scp), str(deg_scp))
    listed.pairs[0].transcript = "SOMETHING ELSE"
    with pytest.raises(PairListError, match="differs"):
        add_transcripts(listed.pairs, read_text_scp(str(text)), str(text))
    dup = write_scp(tmp_path / "dup_text", ["a X", "a Y"])
    with pytest.raises(PairListError, match="duplicate id 'a'"):
        read_text_scp(str(dup))


# --- folders ------------------------------------------------------------------------------------

def test_folder_pairs_nested_and_different_extensions(tmp_path, capsys):
    refs, degs, expected = tmp_path / "A", tmp_path / "B", {}
    for k, rel in enumerate(["spk1/u1", "spk1/u2", "spk2/deep/u1", "top"]):
        x = signal(10 + k)
        expected[rel] = (write(refs / f"{rel}.flac", x), write(degs / f"{rel}.wav", degrade(x, k, 0.02 * (k + 1))))
    write(refs / ".hidden" / "x.flac", signal(99))  # hidden: not part of the pairs
    (refs / "spk1" / "notes.txt").write_text("not audio")
    rc, out, err = run_cli(capsys, "--ref-dir", str(refs), "--deg-dir", str(degs), "--metrics", METRICS, "--json")
    assert rc == 0, err
    results = by_id(out)
    assert sorted(results) == sorted(expected)
    for rel, (ref, deg) in expected.items():
        assert results[rel]["metrics"] == single(capsys, ref, deg)
        assert Path(results[rel]["ref"]).suffix == ".flac" and Path(results[rel]["deg"]).suffix == ".wav"


def test_folder_problems(tmp_path, capsys):
    refs, degs = tmp_path / "A", tmp_path / "B"
    x = signal(1)
    write(refs / "a.wav", x)
    write(refs / "b.wav", x)
    write(degs / "a.wav", x)
    argv = ["--ref-dir", str(refs), "--deg-dir", str(degs), "--metrics", "si_sdr", "--json"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "1 id(s) are not in both lists" in err and "(b)" in err
    rc, out, err = run_cli(capsys, *argv, "--allow-unpaired")
    assert rc == 0 and list(by_id(out)) == ["a"] and "skipped 1 unpaired id(s)" in err
    write(degs / "a.flac", x)  # a.wav and a.flac: which one is meant?
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "'a' is ambiguous (a.flac and a.wav)" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "--ref-dir", str(refs), "--deg-dir", str(refs))
    assert rc == 2 and "same folder" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_cli(capsys, "--ref-dir", str(refs), "--deg-dir", str(empty))
    assert rc == 2 and "no audio files" in err
    rc, _, err = run_cli(capsys, "--ref-dir", str(tmp_path / "nope"), "--deg-dir", str(degs))
    assert rc == 2 and "no such folder" in err


def test_deg_folder_inside_ref_folder(tmp_path, capsys):
    refs = tmp_path / "corpus"
    x = signal(3)
    write(refs / "u1.wav", x)
    write(refs / "decoded" / "u1.wav", degrade(x, 3, 0.05))
    rc, out, err = run_cli(capsys, "--ref-dir", str(refs), "--deg-dir", str(refs / "decoded"),
                           "--metrics", "si_sdr", "--json")
    assert rc == 0, err  # decoded/u1 is not a reference without a partner
    assert list(by_id(out)) == ["u1"]


# --- JSON Lines ---------------------------------------------------------------------------------

def test_jsonl_pairs_equal_scoring_each_pair(tmp_path, corpus, capsys):
    (u1r, u1d), (u2r, u2d), (u3r, u3d) = corpus.values()
    lines = [json.dumps({"ref": f"ref/{u1r.name}", "deg": f"deg files/{u1d.name}", "id": "first"}),
             "",
             json.dumps({"ref": str(u2r), "deg": str(u2d), "id": 7, "domain": "music", "transcript": None}),
             json.dumps({"REF": str(u3r), "deg": str(u3d), "note": "ignored"})]
    listing = tmp_path / "pairs.jsonl"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, out, err = run_cli(capsys, "--pairs", str(listing), "--metrics", METRICS + ",stoi", "--json")
    assert rc == 0, err
    results = by_id(out)
    assert list(results) == ["first", "7", u3d.stem]
    assert results["7"]["domain"] == "music" and results["first"]["domain"] == "general"
    for rid, (ref, deg) in zip(results, corpus.values()):
        expect = single(capsys, ref, deg, "--domain", results[rid]["domain"], "--metrics", METRICS + ",stoi")
        assert results[rid]["metrics"] == expect
    assert results["7"]["metrics"]["stoi"]["status"] == "skipped"
    assert read_pairs_jsonl(str(listing))[1].id == "7"


JSONL_PROBLEMS = [
    ("bad-json", ['{"ref": "{ref}", "deg": "{ref}"}', '{"ref": "{ref}", '], ":2: not valid JSON"),
    ("not-object", ['["{ref}", "{ref}"]'], ":1: expected a JSON object"),
    ("no-deg", ['{"ref": "{ref}"}'], ":1: needs non-empty 'ref' and 'deg'"),
    ("number-path", ['{"ref": "{ref}", "deg": 3}'], ":1: 'deg' must be a string"),
    ("missing-file", ['{"ref": "{ref}", "deg": "gone.wav"}'], ":1: deg: no such file"),
    ("bad-domain", ['{"ref": "{ref}", "deg": "{ref}", "domain": "podcast"}'], "unknown domain 'podcast'"),
    ("only-blank", ["", "  "], "no pairs"),
]


@pytest.mark.parametrize("lines,needle", [c[1:] for c in JSONL_PROBLEMS], ids=[c[0] for c in JSONL_PROBLEMS])
def test_jsonl_problems_are_one_line_exit_2(tmp_path, corpus, capsys, monkeypatch, lines, needle):
    import bench.cli.score as score_mod

    monkeypatch.setattr(score_mod, "score_files", lambda *a, **k: pytest.fail("scored a bad list"))
    ref = str(corpus["utt1"][0])
    listing = tmp_path / "list.json-lines"
    listing.write_text("\n".join(ln.replace("{ref}", ref) for ln in lines) + "\n", encoding="utf-8")
    rc, _, err = run_cli(capsys, "--pairs", str(listing), "--metrics", METRICS)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err and "list.json-lines" in err, err


def test_plain_json_is_refused_with_a_hint(tmp_path, capsys):
    listing = tmp_path / "pairs.json"
    listing.write_text('[{"ref": "a.wav", "deg": "b.wav"}]')
    rc, _, err = run_cli(capsys, "--pairs", str(listing))
    assert rc == 2 and ".jsonl" in err


# --- which options go together ------------------------------------------------------------------

COMBINATIONS = [
    ("pairs-and-scp", ["--pairs", "{list}", "--ref-scp", "{scp}", "--deg-scp", "{scp}"], "not both"),
    ("files-and-dirs", ["{ref}", "{ref}", "--ref-dir", "{dir}", "--deg-dir", "{dir}"], "not both"),
    ("three-sources", ["{ref}", "{ref}", "--pairs", "{list}", "--ref-dir", "{dir}", "--deg-dir", "{dir}"],
     "not several"),
    ("half-scp", ["--ref-scp", "{scp}"], "--deg-scp is missing"),
    ("half-dir", ["--deg-dir", "{dir}"], "--ref-dir is missing"),
    ("unpaired-with-pairs", ["--pairs", "{list}", "--allow-unpaired"], "--allow-unpaired applies"),
    ("unpaired-with-files", ["{ref}", "{ref}", "--allow-unpaired"], "--allow-unpaired applies"),
    ("text-scp-with-files", ["{ref}", "{ref}", "--text-scp", "{scp}"], "--text-scp applies"),
    ("transcript-with-scp", ["--ref-scp", "{scp}", "--deg-scp", "{scp}", "--transcript", "hi"], "--transcript"),
    ("text-scp-missing", ["--pairs", "{list}", "--text-scp", "{dir}/none"], "no such file"),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in COMBINATIONS], ids=[c[0] for c in COMBINATIONS])
def test_option_combinations(tmp_path, corpus, capsys, monkeypatch, argv, needle):
    import bench.cli.score as score_mod

    monkeypatch.setattr(score_mod, "score_files", lambda *a, **k: pytest.fail("scored despite bad options"))
    ref = corpus["utt1"][0]
    scp = write_scp(tmp_path / "x.scp", [f"a {ref}"])
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"ref,deg\n{ref},{ref}\n")
    values = {"ref": str(ref), "scp": str(scp), "list": str(listing), "dir": str(ref.parent)}
    rc, _, err = run_cli(capsys, *[a.format(**values) for a in argv], "--metrics", "si_sdr")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


def test_help_documents_every_list_option(capsys):
    with pytest.raises(SystemExit):
        bench_main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--pairs", "--ref-scp", "--deg-scp", "--ref-dir", "--deg-dir", "--allow-unpaired", "--text-scp"):
        assert option in text
    assert "resolved against the list file's folder" in text
