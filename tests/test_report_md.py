"""``report.md`` writes user-controlled strings (item and file names, codec keys, checkpoint paths,
dataset names, reasons) as literal text: no broken tables, no accidental emphasis, code or links.

The checks parse the markdown the way CommonMark/GFM does where it matters here: a backslash makes
the next ASCII punctuation character literal, an unescaped ``|`` separates table cells.
"""

from __future__ import annotations

import dataclasses
import math
import string

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.reports import report as rep
from bench.reports.load import load_run
from bench.reports.synthetic import DEFAULT_CODECS, make_items, make_run
from bench.store import Store

HOSTILE_ITEM = "a|b*_c_"
HOSTILE_FILE = f"/data/{HOSTILE_ITEM}.wav"
HOSTILE_DATASET = "lib*ri_tts|<b>x</b>"
HOSTILE_CODEC = "toy:/ck_pts/my|model_*v2*&[1](x).safetensors"
HOSTILE_REASON = f"{HOSTILE_FILE}: unreadable or corrupt audio `~~x~~` $y$"
HOSTILE_RUN_ID = "run`*1*`|x"
SPECIALS = set("\\`*_[]<>|~$&")


def _unescape(text: str) -> str:
    """Literal text of markdown inline content: backslash + ASCII punctuation -> the character."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in string.punctuation:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _unescaped(text: str) -> list[str]:
    """The special characters of ``text`` that are not backslash-escaped."""
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in string.punctuation:
            i += 2
            continue
        if text[i] in SPECIALS:
            found.append(text[i])
        i += 1
    return found


def _cells(line: str) -> list[str]:
    """Cells of a GFM table row: split on unescaped pipes, outer pipes dropped."""
    cells, cur, i = [], [], 0
    body = line.strip()[1:-1] if line.strip().startswith("|") else line
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cur.append(body[i : i + 2])
            i += 2
        elif body[i] == "|":
            cells.append("".join(cur).strip())
            cur, i = [], i + 1
        else:
            cur.append(body[i])
            i += 1
    cells.append("".join(cur).strip())
    return cells


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
@settings(max_examples=200, deadline=None)
def test_md_escape_is_literal_and_reversible(text):
    escaped = rep.md_escape(text)
    assert "\n" not in escaped and "\r" not in escaped
    assert _unescaped(escaped) == []
    assert _unescape(escaped) == " ".join(text.splitlines())


def test_md_code_and_link_target():
    assert rep.md_code("plain") == "`plain`"
    assert rep.md_code("a``b") == "```a``b```"  # a longer fence than any backtick run inside
    assert rep.md_code("`x") == "`` `x ``"
    assert rep.md_link_target("plots/rd (1).png") == "plots/rd%20%281%29.png"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A synthetic run whose names and reasons are full of markdown specials."""
    root = tmp_path_factory.mktemp("hostile")
    items = make_items(root / "audio", n_speakers=2, per_speaker=2, n_tracks=1, per_track=2, n_general=2)
    items = [dataclasses.replace(it, dataset=HOSTILE_DATASET, id=HOSTILE_ITEM if it.id == "sound0" else it.id)
             for it in items]
    codecs = {"opus": DEFAULT_CODECS["opus"], HOSTILE_CODEC: DEFAULT_CODECS["toy:/ckpts/toy-v1.safetensors"]}
    run_dir = make_run(root / "run", codecs=codecs, items=items, run_id=HOSTILE_RUN_ID, write_recon=False)
    with Store(run_dir / "results.sqlite") as store:
        store.put_results(HOSTILE_RUN_ID, [{"item_id": HOSTILE_ITEM, "codec": "opus", "op": "6", "metric": "si_sdr",
                                            "nominal_kbps": 6.0, "value": math.nan, "status": "failed",
                                            "error": HOSTILE_REASON}])
    return run_dir


@pytest.fixture(scope="module")
def markdown(hostile_run, tmp_path_factory):
    report = rep.build(load_run(hostile_run), n_boot=50)
    out = tmp_path_factory.mktemp("md")
    report.plots = {"si_sdr": out / "plots" / "rd (si_sdr).png"}
    return report, rep.write_markdown(report, out).read_text(encoding="utf-8")


def test_tables_keep_their_shape(markdown):
    _, md = markdown
    lines = md.splitlines()
    n_tables = 0
    for k, line in enumerate(lines):
        if line.startswith("|") and k + 1 < len(lines) and lines[k + 1].startswith("|---"):
            n_tables += 1
            width = len(_cells(line))
            for row in lines[k + 2 :]:
                if not row.startswith("|"):
                    break
                assert len(_cells(row)) == width, row
    assert n_tables >= 5


def test_user_strings_are_literal_everywhere(markdown):
    _, md = markdown
    for raw in (HOSTILE_ITEM, HOSTILE_DATASET, "my|model_*v2*", "`~~x~~`", "<b>x</b>", "$y$"):
        assert raw not in md, raw  # only the escaped form may appear
    assert rep.md_escape(HOSTILE_DATASET) in md
    assert rep.md_escape(HOSTILE_FILE) in md  # the failure reason names the item's file
    # no line outside code spans and fixed syntax has an unescaped special from user text
    for line in md.splitlines():
        if line.startswith("|"):
            for cell in _cells(line):
                assert _unescaped(cell) == [], (line, cell)


def test_cells_read_back_as_the_display_values(markdown):
    report, md = markdown
    rows = rep.counts_rows(report)
    lines = md.splitlines()
    start = lines.index("## Counts") + 2
    header = [_unescape(c) for c in _cells(lines[start])]
    assert header == list(rows[0])
    got = [[_unescape(c) for c in _cells(line)] for line in lines[start + 2 : start + 2 + len(rows)]]
    assert got == [list(r.values()) for r in rows]
    assert any(HOSTILE_FILE in cell for row in got for cell in row)


def test_header_code_spans_and_plot_link(markdown, hostile_run):
    _, md = markdown
    assert f"Run {rep.md_code(HOSTILE_RUN_ID)} in {rep.md_code(hostile_run)}" in md
    assert rep.md_code(HOSTILE_RUN_ID).startswith("``") and not rep.md_code(HOSTILE_RUN_ID).startswith("```")
    assert "](plots/rd%20%28si_sdr%29.png)" in md
    assert f"# Codec benchmark report: {rep.md_escape(HOSTILE_DATASET)}" in md


def test_csv_outputs_round_trip_hostile_names(hostile_run, tmp_path):
    """pandas quotes CSV fields: commas, quotes and pipes in codec keys survive a read back."""
    report = rep.build(load_run(hostile_run), n_boot=50)
    rep.write_csv(report, tmp_path)
    counts = pd.read_csv(tmp_path / "counts.csv", keep_default_na=False)
    assert HOSTILE_CODEC in set(counts["codec"])
    assert any(HOSTILE_FILE in r for r in counts["failure_reasons"])
    summary = pd.read_csv(tmp_path / "summary.csv", keep_default_na=False)
    assert set(summary["dataset"]) == {HOSTILE_DATASET}


def test_plots_print_dollar_signs_in_labels(tmp_path):
    """A checkpoint path with '$' in it (mathtext syntax) must be drawn as text, not crash the plot."""
    root = tmp_path
    items = make_items(root / "audio", n_speakers=2, per_speaker=2, n_tracks=0, per_track=0, n_general=0)
    codecs = {"opus": DEFAULT_CODECS["opus"], "toy:/ck/$\\foo$.safetensors": DEFAULT_CODECS["toy:/ckpts/toy-v1.safetensors"]}
    run_dir = make_run(root / "run", codecs=codecs, items=items, write_recon=False)
    report = rep.build(load_run(run_dir), n_boot=50)
    written = rep.write_plots(report, root / "out")
    assert written and all(p.stat().st_size > 1000 for p in written.values())


def test_plot_file_names_are_distinct_for_distinct_names():
    from bench.reports.plots import safe_name

    assert safe_name("si_sdr") == "si_sdr"
    names = ["a b", "a_b", "a/b", "a:b"]
    assert len({safe_name(n) for n in names}) == len(names)
