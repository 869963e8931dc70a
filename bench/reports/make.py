"""Write every part of a report for one run: R-D plots, tables (CSV, wide.csv, table.tex), JSON, markdown and HTML.

``make_report`` is the programmatic entry point behind ``bench report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

#: the output formats ``bench report --format`` chooses among
FORMATS = ("html", "md", "csv", "json")


def make_report(run_dir: str | Path, out_dir: str | Path | None = None, *, reference: str | None = None,
                formats: list[str] | tuple[str, ...] = FORMATS, run_id: str | None = None,
                n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
                audio_source: Callable[[str, str | None, str | None], Any] | None = None,
                with_audio: bool = True, listen_kbps: float | None = None, excerpt_s: float = 5.0,
                paper_tables: bool = True, single_file: bool = False) -> dict[str, Path]:
    """Programmatic entry point; returns the written files by kind.

    ``single_file`` also writes ``report.html`` (every image and clip embedded; key ``html``).

    ``paper_tables`` also writes ``table.tex`` and ``wide.csv`` (keys ``paper:table.tex``, ``paper:wide.csv``).
    """
    from bench.deps import require

    require(["pandas", "matplotlib"], "bench report")
    from bench.reports import html as html_mod
    from bench.reports import report as rep
    from bench.reports.load import load_run

    data = load_run(run_dir, run_id)
    out = Path(out_dir) if out_dir else data.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = rep.build(data, reference=reference, n_boot=n_boot, alpha=alpha, seed=seed)
    written: dict[str, Path] = {}
    for metric, path in rep.write_plots(report, out).items():
        written[f"plot:{metric}"] = path
    if "csv" in formats:
        for path in rep.write_csv(report, out):
            written[f"csv:{path.stem}"] = path
    for path in rep.write_paper_tables(report, out) if paper_tables else []:
        written[f"paper:{path.name}"] = path
    if "json" in formats:
        written["json"] = rep.write_json(report, out)
    if "md" in formats:
        written["md"] = rep.write_markdown(report, out)
    if "html" in formats:
        source = audio_source if audio_source is not None else (html_mod.default_audio_source(data) if with_audio else None)
        written["html"] = html_mod.write_html(report, out, audio_source=source if with_audio else None,
                                              excerpt_s=excerpt_s, target_kbps=listen_kbps, single_file=single_file)
    return written
