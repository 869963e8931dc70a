#!/usr/bin/env python3
"""Render an HTML report to a PNG in a real headless browser (Debian's chromium).

    python scripts/render_report.py RUN_DIR/report/index.html --out shot.png [--height 4000]
    python scripts/render_report.py --synthetic /tmp/synth --out shot.png   # build a synthetic run first

Prints the screenshot path and a blankness check (share of non-background pixels). Exit code 0
when the screenshot exists and is not blank, 1 when it is blank, 2 when chromium is missing or
fails. Install the browser with ``apt-get install -y chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1400, height: int = 3000,
               timeout_s: float = 120.0) -> Path:
    """Take a full-width screenshot of a local HTML file; raises RuntimeError when the browser fails."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium found; install it with: apt-get install -y chromium")
    html_path = Path(html_path).resolve()
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png_path}", html_path.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not png_path.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-800:]}")
    return png_path


def ink_fraction(png_path: str | Path) -> float:
    """Share of pixels that differ clearly from the most common (background) colour."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(str(png_path))[..., :3]
    flat = (img.reshape(-1, 3) * 255).astype(np.int32)
    keys = flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    bg = values[np.argmax(counts)]
    bg_rgb = np.array([bg // 65536, (bg // 256) % 256, bg % 256])
    return float(np.mean(np.abs(flat - bg_rgb).sum(axis=1) > 30))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="?", help="the report's index.html")
    ap.add_argument("--synthetic", default=None, metavar="DIR",
                    help="build a synthetic run in DIR, write its report, and render that")
    ap.add_argument("--out", default="report.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args(argv)
    if args.synthetic:
        from bench.reports.make import make_report
        from bench.reports.synthetic import audio_source, make_run

        run = make_run(args.synthetic)
        args.html = str(make_report(run, audio_source=audio_source(run), n_boot=500)["html"])
    if not args.html:
        ap.error("give the report's index.html or --synthetic DIR")
    try:
        png = screenshot(args.html, args.out, width=args.width, height=args.height)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ink = ink_fraction(png)
    print(f"screenshot: {png} (non-background pixels: {ink:.1%})")
    return 0 if ink > 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
