"""``bench score``: files made elsewhere are scored through the same pipeline, with the same numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from shared_paths import metrics_ref_file

from bench.cli import main as bench_main

PESQ_AUDIO = metrics_ref_file("pesq/audio/speech.wav").parent


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``bench score ARGV`` in-process: (exit code, stdout, stderr); argparse's exit is caught too."""
    try:
        rc = bench_main(["score", *argv])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def tone_bursts(rate_hz: int, duration_s: float = 1.5, seed: int = 0) -> np.ndarray:
    """Harmonic bursts with pauses: enough structure for the cross-correlation lag estimate."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    env = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(np.float64)
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((220, 440, 660, 1320), 1))
    return (0.2 * env * x + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def write(path: Path, x: np.ndarray, rate_hz: int) -> str:
    import soundfile as sf

    sf.write(str(path), x, rate_hz, subtype="FLOAT")
    return str(path)


def test_reference_pair_gives_reference_values(capsys):
    if not PESQ_AUDIO.exists():
        pytest.skip("shared metrics-ref folder absent")
    rc, out, _ = run_cli(capsys, str(PESQ_AUDIO / "speech.wav"), str(PESQ_AUDIO / "speech_bab_0dB.wav"),
                         "--domain", "speech", "--metrics", "pesq_wb,pesq_nb,stoi,si_sdr", "--json")
    assert rc == 0
    result = json.loads(out)
    m = result["metrics"]
    assert result["lag_samples"] == 0 and result["sample_rate_hz"] == 16000
    assert m["pesq_wb"]["value"] == 1.0832337141036987
    assert m["pesq_nb"]["value"] == 1.6072081327438354
    assert round(m["stoi"]["value"], 4) == 0.6739
    assert m["si_sdr"]["value"] == pytest.approx(0.10378976323555572, rel=1e-9)


def test_rate_mismatch_delay_and_table(tmp_path, capsys):
    ref = tone_bursts(48000)
    delay = 120
    deg48 = np.concatenate([np.zeros(delay, np.float32), ref])[: len(ref)] * 0.5
    from bench.audio import resample

    deg24 = resample(deg48, 48000, 24000)
    ref_path, deg_path = write(tmp_path / "ref.wav", ref, 48000), write(tmp_path / "deg.wav", deg24, 24000)
    rc, out, _ = run_cli(capsys, ref_path, deg_path, "--metrics", "si_sdr,lsd,pesq_wb", "--json")
    assert rc == 0
    result = json.loads(out)
    assert result["sample_rate_hz"] == 48000
    assert any("resampled 24000 -> 48000" in n for n in result["notes"])
    assert result["lag_samples"] == delay
    assert result["metrics"]["si_sdr"]["value"] > 20  # delay removed, scale ignored, only 24k band-limit left
    assert result["metrics"]["pesq_wb"]["status"] == "skipped"
    assert "speech only" in result["metrics"]["pesq_wb"]["reason"]
    # without alignment the same pair scores far worse: the policy matters and is applied
    rc, out, _ = run_cli(capsys, ref_path, deg_path, "--metrics", "si_sdr", "--align", "none", "--json")
    assert json.loads(out)["metrics"]["si_sdr"]["value"] < 0
    # the table form lists every metric with its status
    rc, out, _ = run_cli(capsys, ref_path, deg_path, "--metrics", "si_sdr,pesq_wb")
    assert rc == 0 and "si_sdr" in out and "skipped: pesq_wb applies to speech only" in out


def test_pairs_csv_json_and_out_file(tmp_path, capsys):
    rate = 16000
    ref = tone_bursts(rate)
    rng = np.random.default_rng(3)
    clean = write(tmp_path / "ref.wav", ref, rate)
    noisy = write(tmp_path / "noisy.wav", ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32), rate)
    silent = write(tmp_path / "silent.wav", np.zeros_like(ref), rate)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("id,ref,deg,domain\n"
                     "a,ref.wav,noisy.wav,music\n"
                     f"b,{clean},ref.wav,\n"
                     "c,ref.wav,silent.wav,speech\n")
    out_csv = tmp_path / "scores.csv"
    rc, out, _ = run_cli(capsys, "--pairs", str(pairs), "--metrics", "si_sdr,mel_distance,stoi", "--json",
                         "--out", str(out_csv))
    assert rc == 0
    results = {r["id"]: r for r in json.loads(out)}
    assert set(results) == {"a", "b", "c"}
    assert results["a"]["metrics"]["stoi"]["status"] == "skipped"  # music
    assert results["b"]["domain"] == "general"  # empty column falls back to --domain
    assert results["b"]["metrics"]["mel_distance"]["value"] == 0.0
    assert results["a"]["metrics"]["mel_distance"]["value"] > 0.1
    c = results["c"]["metrics"]["si_sdr"]
    assert c["status"] == "failed" and c["value"] is None and "silent" in c["reason"]
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 9
    row = next(r for r in rows if r["id"] == "a" and r["metric"] == "si_sdr")
    assert math.isclose(float(row["value"]), results["a"]["metrics"]["si_sdr"]["value"])


def test_errors_name_the_problem(tmp_path, capsys):
    ref = write(tmp_path / "ref.wav", tone_bursts(16000, 0.5), 16000)
    rc, _, err = run_cli(capsys, ref, str(tmp_path / "missing.wav"), "--metrics", "si_sdr")
    assert rc == 2 and "missing.wav" in err and "no such file" in err
    rc, _, err = run_cli(capsys, ref, ref, "--metrics", "si_sdrr")
    assert rc == 2 and "si_sdr" in err
    rc, _, err = run_cli(capsys, ref)
    assert rc == 2 and "REF and DEG" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("reference,degraded\nx,y\n")
    rc, _, err = run_cli(capsys, "--pairs", str(bad))
    assert rc == 2 and "'ref' and 'deg'" in err


def test_truncated_decode_is_a_failure_not_a_perfect_score(tmp_path, capsys):
    rate = 16000
    ref = tone_bursts(rate)
    ref_path = write(tmp_path / "ref.wav", ref, rate)
    short = write(tmp_path / "short.wav", ref[: len(ref) // 4], rate)  # the decode stopped at a quarter
    out_csv = tmp_path / "scores.csv"
    rc, out, _ = run_cli(capsys, ref_path, short, "--metrics", "si_sdr,mel_distance,stoi", "--json",
                         "--out", str(out_csv))
    assert rc == 0  # a failed pair is a result, not a usage error
    m = json.loads(out)["metrics"]
    for name in ("si_sdr", "mel_distance"):
        assert m[name]["status"] == "failed" and m[name]["value"] is None
        assert f"ref {len(ref)} samples" in m[name]["reason"] and f"deg {len(ref) // 4} samples" in m[name]["reason"]
    assert m["stoi"]["status"] == "skipped"
    with open(out_csv, newline="", encoding="utf-8") as f:
        assert {r["status"] for r in csv.DictReader(f) if r["metric"] != "stoi"} == {"failed"}
    # a generous tolerance asked for explicitly gives the old trim, with the note
    rc, out, _ = run_cli(capsys, ref_path, short, "--metrics", "si_sdr", "--json", "--length-tolerance-s", "2")
    result = json.loads(out)
    assert result["metrics"]["si_sdr"]["status"] == "ok"
    assert any("lengths differ" in n for n in result["notes"])


def test_stereo_against_mono_is_noted(tmp_path, capsys):
    ref = tone_bursts(16000)
    ref_path = write(tmp_path / "ref.wav", ref, 16000)
    stereo = write(tmp_path / "stereo.wav", np.stack([ref, ref], axis=1), 16000)
    rc, out, _ = run_cli(capsys, ref_path, stereo, "--metrics", "si_sdr", "--json")
    result = json.loads(out)
    assert rc == 0 and any("channels differ: ref 1, deg 2" in n for n in result["notes"])


@pytest.fixture
def files(tmp_path):
    """A valid pair, a regular file to put paths under, and a folder."""
    ref = write(tmp_path / "ref.wav", tone_bursts(16000, 0.5), 16000)
    plain = tmp_path / "plain.txt"
    plain.write_text("not a folder")
    (tmp_path / "folder").mkdir()
    return {"ref": ref, "plain": str(plain), "dir": str(tmp_path / "folder"), "tmp": tmp_path}


# (id, argv with {ref}/{plain}/{dir}/{tmp} placeholders, text the one-line error must contain)
BAD_ARGS = [
    ("workers-0", ["{ref}", "{ref}", "--workers", "0"], "--workers"),
    ("workers-negative", ["{ref}", "{ref}", "--workers", "-3"], "--workers"),
    ("workers-float", ["{ref}", "{ref}", "--workers", "1.5"], "--workers"),
    ("workers-text", ["{ref}", "{ref}", "--workers", "many"], "--workers"),
    ("max-lag-negative", ["{ref}", "{ref}", "--max-lag-s", "-0.1"], "--max-lag-s"),
    ("max-lag-nan", ["{ref}", "{ref}", "--max-lag-s", "nan"], "--max-lag-s"),
    ("max-lag-inf", ["{ref}", "{ref}", "--max-lag-s", "inf"], "--max-lag-s"),
    ("max-lag-text", ["{ref}", "{ref}", "--max-lag-s", "soon"], "--max-lag-s"),
    ("max-lag-empty", ["{ref}", "{ref}", "--max-lag-s", ""], "--max-lag-s"),
    ("tolerance-negative", ["{ref}", "{ref}", "--length-tolerance-s", "-1"], "--length-tolerance-s"),
    ("tolerance-nan", ["{ref}", "{ref}", "--length-tolerance-s", "NaN"], "--length-tolerance-s"),
    ("out-under-file", ["{ref}", "{ref}", "--out", "{plain}/scores.csv"], "scores.csv"),
    ("out-is-folder", ["{ref}", "{ref}", "--out", "{dir}"], "folder"),
    ("domain", ["{ref}", "{ref}", "--domain", "podcast"], "--domain"),
    ("align", ["{ref}", "{ref}", "--align", "best"], "--align"),
    ("metric-unknown", ["{ref}", "{ref}", "--metrics", "si_sdrr"], "si_sdr"),
    ("metric-empty", ["{ref}", "{ref}", "--metrics", ","], "no metric"),
    ("ref-missing", ["{tmp}/nope.wav", "{ref}"], "nope.wav"),
    ("deg-missing", ["{ref}", "{tmp}/gone.flac"], "gone.flac"),
    ("ref-is-folder", ["{dir}", "{ref}"], "not a file"),
    ("only-ref", ["{ref}"], "REF and DEG"),
    ("nothing", [], "REF and DEG"),
    ("pairs-missing", ["--pairs", "{tmp}/list.csv"], "list.csv"),
    ("pairs-folder", ["--pairs", "{dir}"], "not a file"),
    ("pairs-and-files", ["{ref}", "{ref}", "--pairs", "{plain}"], "not both"),
    ("unknown-option", ["{ref}", "{ref}", "--fast"], "--fast"),
]


@pytest.mark.parametrize("argv,needle", [case[1:] for case in BAD_ARGS], ids=[case[0] for case in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(files, capsys, monkeypatch, argv, needle):
    """Table-driven fuzz: every bad value is one line on stderr, exit 2, and no scoring starts."""
    import bench.cli.score as score_mod

    def no_scoring(*_a, **_k):
        raise AssertionError("scoring started before the arguments were checked")

    monkeypatch.setattr(score_mod, "score_files", no_scoring)
    argv = [a.format(**files) for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2, (argv, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


PAIRS_PROBLEMS = [
    ("no-header", "reference,degraded\nx,y\n", "'ref' and 'deg'"),
    ("empty-file", "", "'ref' and 'deg'"),
    ("header-only", "ref,deg\n", "no pairs"),
    ("missing-deg", "ref,deg\nref.wav,lost.wav\n", ":2: deg: no such file"),
    ("missing-ref-line-3", "ref,deg\nref.wav,ref.wav\nlost.wav,ref.wav\n", ":3: ref: no such file"),
    ("deg-is-folder", "ref,deg\nref.wav,folder\n", "not a file"),
    ("empty-cell", "ref,deg\nref.wav,\n", "empty ref or deg"),
    ("short-row", "ref,deg,id\nref.wav\n", "empty ref or deg"),
    ("long-row", "ref,deg\nref.wav,ref.wav,extra,more\n", "2 more field(s)"),
    ("bad-domain", "ref,deg,domain\nref.wav,ref.wav,podcast\n", "unknown domain 'podcast'"),
]


@pytest.mark.parametrize("text,needle", [c[1:] for c in PAIRS_PROBLEMS], ids=[c[0] for c in PAIRS_PROBLEMS])
def test_pairs_list_problems_exit_2_before_scoring(files, capsys, monkeypatch, text, needle):
    import bench.cli.score as score_mod

    monkeypatch.setattr(score_mod, "score_files", lambda *a, **k: pytest.fail("scored a bad pairs list"))
    pairs = files["tmp"] / "pairs.csv"
    pairs.write_text(text)
    rc, _, err = run_cli(capsys, "--pairs", str(pairs), "--metrics", "si_sdr")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err and "pairs.csv" in err, err


def test_pairs_list_binary_and_bom(files, capsys):
    binary = files["tmp"] / "pairs.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00\n")
    rc, _, err = run_cli(capsys, "--pairs", str(binary))
    assert rc == 2 and "UTF-8" in err and len(err.strip().splitlines()) == 1
    bom = files["tmp"] / "excel.csv"  # spreadsheets save UTF-8 CSV with a byte-order mark
    bom.write_bytes("\ufeffref,deg\nref.wav,ref.wav\n".encode("utf-8"))
    rc, out, err = run_cli(capsys, "--pairs", str(bom), "--metrics", "si_sdr", "--json")
    assert rc == 0, err
    assert json.loads(out)[0]["metrics"]["si_sdr"]["status"] == "ok"


def test_transcript_with_pairs_is_refused(files, capsys):
    pairs = files["tmp"] / "pairs.csv"
    pairs.write_text("ref,deg\nref.wav,ref.wav\n")
    rc, _, err = run_cli(capsys, "--pairs", str(pairs), "--transcript", "hello")
    assert rc == 2 and "transcript" in err


def test_corrupt_audio_is_exit_1_naming_the_file(files, capsys):
    broken = files["tmp"] / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    rc, _, err = run_cli(capsys, files["ref"], str(broken), "--metrics", "si_sdr")
    assert rc == 1 and "broken.wav" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_real_entry_point_prints_one_line(files):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench.cli", "score", files["ref"], files["ref"], "--out",
                           files["plain"] + "/x.csv"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "x.csv" in proc.stderr


def test_out_csv_quotes_odd_names(files, capsys):
    """Commas, quotes, pipes and newlines in ids and paths survive the --out CSV (the csv module quotes)."""
    odd = files["tmp"] / 'we,ird "deg"|x.wav'
    odd.write_bytes(Path(files["ref"]).read_bytes())
    pairs = files["tmp"] / "pairs.csv"
    with open(pairs, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "ref", "deg"], ['a,"b"\nc', "ref.wav", odd.name]])
    out_csv = files["tmp"] / "out" / "scores.csv"  # the folder is created
    rc, _, err = run_cli(capsys, "--pairs", str(pairs), "--metrics", "si_sdr", "--out", str(out_csv))
    assert rc == 0, err
    with open(out_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], Path(r["deg"]).name, r["status"]) for r in rows] == [('a,"b"\nc', odd.name, "ok")]
