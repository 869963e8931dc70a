"""The command line tells the truth about itself: every option has help text, ``bench ls codecs`` marks
the default sweeps, ``bench report`` says its stages (and writes what ``make_report`` writes), and the
README names the files a report really writes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.cli import main as bench_main

README = Path(__file__).resolve().parents[1] / "README.md"


def _parsers(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subparser below it, each with its command path (``bench data download``)."""
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _parsers(sub, f"{path} {name}")
    return out


def test_every_option_of_every_command_has_help():
    missing = []
    parsers = _parsers(build_parser(), "bench")
    assert len(parsers) > 10  # run, report, ls, ... and the nested data/weights/baseline actions
    for path, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                missing += [f"{path} {name} (the command itself)" for name in action.choices
                            if not (helps.get(name) or "").strip()]
                continue
            if not isinstance(action.help, str) or not action.help.strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"


def test_ls_codecs_stars_the_default_sweep(capsys):
    from bench.codecs.base import select_codecs

    assert bench_main(["ls", "codecs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "* = the default sweep" in out
    for name in ("dac", "opus"):
        sweep = {s.op.name for s in select_codecs(name)}
        every = {s.op.name for s in select_codecs(f"{name}@*")}
        starred = set(re.findall(r"([\w.\-]+) \([\d.]+\)\*", lines[name]))
        plain = set(re.findall(r"([\w.\-]+) \([\d.]+\)(?!\*)", lines[name]))
        assert starred == sweep and plain | starred == every
    assert starred == every  # opus: every point is in its sweep
    assert "3 (2.25)," in lines["dac"] and "4 (3)*," in lines["dac"]  # dac: a subset


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    tmp = tmp_path_factory.mktemp("helprun")
    return run_benchmark(RunConfig(codecs="opus@6", dataset="demo", limit=2, out_dir=str(tmp / "run"),
                                   cache_dir=str(tmp / "cache"), workers=1, progress=False))


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _readme_report_patterns() -> list[str]:
    """The file names of README's table of what ``bench report`` writes, as globs."""
    text = README.read_text()
    section = text[text.index("What `bench report"):]
    section = section[:section.index("\n\n", section.index("| file |"))]
    patterns = []
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([^`]+)`", first_cell):
            if name.startswith("."):  # "`x.wav` and `.png`": the same name with another suffix
                patterns.append(patterns[-1].rsplit(".", 1)[0] + name)
            else:
                patterns.append(re.sub(r"<[^>]+>", "*", name).replace("NN", "[0-9][0-9]"))
    return patterns


def test_report_says_its_stages_and_the_readme_names_what_it_writes(a_run, tmp_path, capsys):
    from bench.reports.make import make_report

    assert bench_main(["report", str(a_run), "--bootstrap", "200", "--single-file"]) == 0
    err = capsys.readouterr().err
    stages = [ln for ln in err.splitlines() if ln.strip()]
    assert all(ln.startswith("report: ") for ln in stages), err
    for word in ("loaded", "statistics", "R-D plots", "CSV", "JSON", "markdown", "HTML", "done"):
        assert any(word in ln for ln in stages), (word, err)
    written = _files(a_run / "report")
    # the command writes exactly what the programmatic entry point writes
    make_report(a_run, tmp_path / "api", n_boot=200, single_file=True)
    assert _files(tmp_path / "api") == written
    # the README's table names every file written, and each name it gives is written
    patterns = _readme_report_patterns()
    assert len(patterns) >= 12
    unnamed = [f for f in written if not any(Path(f).match(p) and f.count("/") == p.count("/") for p in patterns)]
    assert not unnamed, f"README does not name: {unnamed}"
    conditional = {"set_level.csv"}  # only for runs with a set-level metric (tests/test_fad_runner.py writes it)
    absent = [p for p in patterns if p not in conditional
              and not any(Path(f).match(p) and f.count("/") == p.count("/") for f in written)]
    assert not absent, f"README names files bench report does not write: {absent}"
    # quiet with --no-progress: only the summary line, on stdout
    assert bench_main(["report", str(a_run), "--no-progress", "--format", "md", "--out", str(tmp_path / "q"),
                       "--bootstrap", "100"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("report: ")


def test_readme_tells_cpu_users_how_to_get_the_cpu_build_of_torch():
    text = README.read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in text
    block = text[text.index("<!-- test-command -->"):]
    assert block.splitlines()[1:4] == [
        "```bash",
        'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[test,all]" && '
        "python -m pytest -q",
        "```"]
