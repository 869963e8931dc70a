"""A standalone HTML report: one folder with index.html, plots/, audio/ and spectrograms, no scripts.

Listening examples: a few items (one per domain) and the worst item per metric, each with the
reference and every codec at comparable bitrates (the operating point nearest a common target
kbps), as ``<audio>`` players beside spectrograms. Excerpts are at most ``excerpt_s`` seconds,
16-bit WAV, cut at the same place in every version (the loudest window of the reference).

Where audio comes from is a callable ``audio_source(item_id, codec, op)`` (``codec=None`` for the
reference) returning a path to an audio file, an ``(array [C, T] or [T], sample_rate_hz)`` pair,
a :class:`bench.audio.Audio`, or None when unavailable (an exception's message is shown as the
reason). :func:`default_audio_source` reads references and reconstructions from the run's cache
alone (:mod:`bench.reports.cached_audio`): no dataset, no runner.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.reports import plots, set_level
from bench.reports.cached_audio import CachedAudioSource
from bench.reports.load import RunData
from bench.reports.report import (
    FOOTNOTES,
    TIME_TEXT,
    Report,
    bd_rows,
    counts_rows,
    efficiency_rows,
    fmt,
    memory_note_lines,
    metric_heading,
    metric_rows,
    paired_rows,
    summary_rows,
    time_codec_rows,
    time_metric_rows,
    time_total_rows,
)
from bench.reports.tables import OVERHEAD_MEANING

AudioSource = Callable[[str, "str | None", "str | None"], Any]

CSS = """.banner{background:#fde68a;border:1px solid #b45309;padding:.5em 1em;margin:0}

body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#fafbfc}
header{background:#1f3b57;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px 0;font-size:22px} header p{margin:2px 0;font-size:13px;opacity:.9}
nav{background:#e8eef4;padding:8px 28px;font-size:13px;position:sticky;top:0;z-index:2}
nav a{margin-right:14px;color:#1f3b57;text-decoration:none;font-weight:600}
main{padding:8px 28px 40px 28px;max-width:1500px}
h2{border-bottom:2px solid #1f3b57;padding-bottom:4px;margin-top:34px;font-size:19px}
h3{font-size:15px;margin:18px 0 6px 0}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px 0;background:#fff}
th,td{border:1px solid #d4dbe2;padding:3px 8px;text-align:right;vertical-align:middle}
th{background:#eef2f6;text-align:center} td:first-child,td.l{text-align:left}
tr:nth-child(even) td{background:#f7f9fb}
.better{color:#17702f;font-weight:600}.worse{color:#b0261b;font-weight:600}.nsd{color:#666}
.note{font-size:12px;color:#555;max-width:1100px}
figure{margin:8px 0 18px 0} figure img{max-width:100%;border:1px solid #d4dbe2;background:#fff}
.listen td{text-align:left;padding:2px 6px} .listen img{width:330px;height:110px;display:block} audio{width:210px;height:32px}
.listen td.scores{max-width:250px;font-size:11.5px;line-height:1.35} .scores span{display:inline-block;margin-right:10px;white-space:nowrap}
.mark{color:#b0261b;font-weight:700} details{margin:6px 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(rows: list[dict[str, str]], cls: str = "", verdict_col: str | None = None) -> str:
    if not rows:
        return '<p class="note">(none)</p>'
    cols = list(rows[0])
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for c in cols:
            v = str(r[c])
            klass = ""
            if c == verdict_col:
                klass = {"better": "better", "worse": "worse"}.get(v, "nsd")
            elif c in ("codec", "metric", "note", "reasons", "vs", "dataset", "domain", "device"):
                klass = "l"
            text = _e(v).replace(" †", ' <span class="mark">†</span>').replace(" ‡", ' <span class="mark">‡</span>')
            cells.append(f'<td class="{klass}">{text}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# --- audio --------------------------------------------------------------------------------------

def _as_audio(obj: Any) -> tuple[np.ndarray, int] | None:
    """Normalise what an audio source returns to (float32 [C, T], rate)."""
    from bench.audio import Audio, load_audio

    if obj is None:
        return None
    if isinstance(obj, Audio):
        return obj.samples, obj.sample_rate_hz
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not path.exists():
            return None
        if path.suffix == ".npy":
            raise ValueError(f"{path}: a bare .npy array has no sample rate; return (array, rate) instead")
        a = load_audio(path)
        return a.samples, a.sample_rate_hz
    if isinstance(obj, tuple) and len(obj) == 2:
        x = np.asarray(obj[0], dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        x = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        return x, int(obj[1])
    raise TypeError(f"audio source returned {type(obj).__name__}; expected a path, (array, rate) or Audio")


def default_audio_source(data: RunData) -> AudioSource:
    """References and reconstructions from the run's reconstruction cache, digests checked.

    The references are the prepared ones the codecs were given (channel policy, loudness), as the
    run cached them; a report made after the dataset moved or was deleted still plays them.
    """
    return CachedAudioSource(data)


def _loudest_window(x: np.ndarray, sr: int, excerpt_s: float) -> int:
    """Start sample of the loudest ``excerpt_s`` window (0.25 s steps)."""
    n = int(excerpt_s * sr)
    if x.shape[-1] <= n:
        return 0
    mono = np.mean(x, axis=0) ** 2
    csum = np.concatenate([[0.0], np.cumsum(mono, dtype=np.float64)])
    hop = max(1, int(0.25 * sr))
    starts = np.arange(0, x.shape[-1] - n + 1, hop)
    energy = csum[starts + n] - csum[starts]
    return int(starts[int(np.argmax(energy))])


# --- choosing what to listen to ------------------------------------------------------------------

def comparable_ops(summary_df: Any, target_kbps: float | None = None) -> tuple[float, dict[str, str]]:
    """A target kbps and, for each codec, the operating point whose measured rate is nearest to it.

    Without a target, pick the rate (among all measured rates) that minimises the summed log-distance
    to each codec's nearest point, so most codecs sit close to it; far-off single-point anchors
    (lossless PCM) do not pull the choice.
    """
    s = summary_df[summary_df["domain"] == "all"].drop_duplicates(["codec", "op"])
    rates: dict[str, list[tuple[float, str]]] = {}
    for r in s.itertuples():
        if math.isfinite(r.measured_kbps) and r.measured_kbps > 0:
            rates.setdefault(r.codec, []).append((r.measured_kbps, r.op))
    if not rates:
        return math.nan, {}
    from bench.reports.rd import Curve, RDPoint

    curves = {c: Curve(c, [RDPoint(c, op, k, k, 0.0) for k, op in pts]) for c, pts in rates.items()}
    anchors = set(plots.anchor_codecs(curves))
    pool = {c: pts for c, pts in rates.items() if c not in anchors} or rates

    def nearest(codec: str, t: float) -> tuple[float, str]:
        return min(rates[codec], key=lambda p: abs(math.log(p[0] / t)))

    if target_kbps is None:
        candidates = sorted({k for pts in pool.values() for k, _ in pts})
        target_kbps = min(candidates, key=lambda t: (sum(abs(math.log(nearest(c, t)[0] / t)) for c in pool), t))
    return float(target_kbps), {c: nearest(c, target_kbps)[1] for c in sorted(rates)}


def choose_items(data: RunData, chosen_ops: dict[str, str], *, n_per_domain: int = 1,
                 worst_per_metric: int = 1) -> list[tuple[str, str]]:
    """(item_id, why) pairs: the first item of each domain, then the worst item(s) per metric.

    "Worst" is the lowest mean oriented value (sign flipped for lower-is-better metrics) across the
    chosen operating points, so it is the item that the codecs at this bitrate handle worst.
    """
    picked: list[tuple[str, str]] = []
    seen: set[str] = set()
    items = data.items.sort_values("item_id")
    for domain in sorted(set(items["domain"])):
        for iid in list(items[items["domain"] == domain]["item_id"])[:n_per_domain]:
            if iid not in seen:
                picked.append((iid, f"example {domain} item"))
                seen.add(iid)
    res = data.results
    ok = res[(res["status"] == "ok") & np.isfinite(res["value"])]
    mask = np.zeros(len(ok), dtype=bool)
    for codec, op in chosen_ops.items():
        mask |= ((ok["codec"] == codec) & (ok["op"] == op)).to_numpy()
    ok = ok[mask]
    for metric in sorted(set(ok["metric"])):
        info = data.info(metric)
        sign = 1.0 if info.higher_is_better else -1.0
        means = ok[ok["metric"] == metric].groupby("item_id")["value"].mean()
        order = (means * sign).sort_values(kind="stable")
        for iid in list(order.index)[:worst_per_metric]:
            why = f"worst on {metric} (mean {fmt(means[iid])}{' ' + info.unit if info.unit else ''})"
            if iid in seen:
                picked = [(i, w + "; " + why if i == iid else w) for i, w in picked]
            else:
                picked.append((iid, why))
                seen.add(iid)
    return picked


def _write_clip(x: np.ndarray, sr: int, start: int, excerpt_s: float, wav_path: Path, png_path: Path) -> None:
    import soundfile as sf

    from bench.audio import to_channels

    n = int(excerpt_s * sr)
    clip = x[:, start:start + n]
    if clip.shape[0] > 2:
        clip = to_channels(clip, 1)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav_path), np.clip(clip, -1.0, 1.0).T, sr, subtype="PCM_16")
    plots.plot_spectrogram(clip.mean(axis=0), sr, png_path)


def listening_section(report: Report, out_dir: Path, audio_source: AudioSource | None, *,
                      excerpt_s: float = 5.0, target_kbps: float | None = None,
                      n_per_domain: int = 1, worst_per_metric: int = 1) -> str:
    """Write the clips and spectrograms and return the HTML of the listening section."""
    data = report.data
    target, ops = comparable_ops(report.summary, target_kbps)
    if not ops:
        return '<p class="note">No coded items in this run.</p>'
    if audio_source is None:
        return '<p class="note">Listening examples were not requested (--no-audio).</p>'
    chosen = choose_items(data, ops, n_per_domain=n_per_domain, worst_per_metric=worst_per_metric)
    parts = [f'<p class="note">Reference and every codec at the operating point nearest {fmt(target)} kbps '
             f'(measured). Excerpts of at most {excerpt_s:g} s, 16-bit WAV, same window in every row; '
             "spectrograms: time and frequency axes as labelled (linear frequency), colour bar "
             "in dB re full scale from -100 (black) to 0 (yellow).</p>"]
    missing: list[str] = []
    clips = _Clips(out_dir, audio_source, excerpt_s, missing)
    for k, (item_id, why) in enumerate(chosen):
        parts.append(_listening_item(data, clips, ops, k, item_id, why))
    if missing:
        parts.append("<details><summary>Audio not available for "
                     f"{len(missing)} version(s)</summary><ul>" + "".join(f"<li>{_e(m)}</li>" for m in missing)
                     + "</ul></details>")
    return "".join(parts)


class _Clips:
    """Where one listening section's audio comes from and goes to; unavailable versions collect in ``missing``."""

    def __init__(self, out_dir: Path, audio_source: AudioSource, excerpt_s: float, missing: list[str]) -> None:
        self.out_dir, self.source, self.excerpt_s, self.missing = out_dir, audio_source, excerpt_s, missing

    def fetch(self, item_id: str, label: str, codec: str | None, op: str | None) -> tuple[np.ndarray, int] | None:
        """One version's audio, or None with the reason noted (one unreadable file must not sink the report)."""
        try:
            return _as_audio(self.source(item_id, codec, op))
        except Exception as exc:  # noqa: BLE001
            self.missing.append(f"{item_id} {label}: {exc}")
            return None

    def player(self, got: tuple[np.ndarray, int] | None, slug: str, label: str, start_s: float) -> tuple[str, str, str]:
        """(player, spectrogram, rate note) cells of one version, writing its clip when there is audio."""
        if got is None:
            return '<span class="note">not available</span>', "", ""
        x, sr = got
        wav = self.out_dir / "audio" / f"{slug}.wav"
        png = self.out_dir / "audio" / f"{slug}.png"
        _write_clip(x, sr, int(round(start_s * sr)), self.excerpt_s, wav, png)
        return (f'<audio controls preload="none" src="audio/{_e(wav.name)}"></audio>',
                f'<img src="audio/{_e(png.name)}" alt="spectrogram {_e(label)}">',
                f'<br><span class="note">{sr} Hz</span>')


def _listening_item(data: RunData, clips: _Clips, ops: dict[str, str], k: int, item_id: str, why: str) -> str:
    """The heading and table of one listening example: the reference, then every codec at its chosen point."""
    ref = clips.fetch(item_id, "reference", None, None)
    start_s = 0.0
    if ref is not None:
        start_s = _loudest_window(ref[0], ref[1], clips.excerpt_s) / ref[1]
    meta = data.items[data.items["item_id"] == item_id]
    domain = meta["domain"].iloc[0] if len(meta) else ""
    rows = []
    versions: list[tuple[str, str | None, str | None]] = [("reference", None, None)]
    versions += [(f"{data.label(c)}@{o}", c, o) for c, o in ops.items()]
    for label, codec, op in versions:
        got = ref if codec is None else clips.fetch(item_id, label, codec, op)
        player, spec, rate_note = clips.player(got, plots.safe_name(f"{k:02d}_{item_id}_{label}"), label, start_s)
        if got is None and codec is not None:
            clips.missing.append(f"{item_id} {label}: no reconstruction found")
        kbps, scores = _version_scores(data, item_id, codec, op)
        cell = "".join(f"<span>{_e(m)} <b>{_e(v)}</b></span>" for m, v in zip(data.metrics, scores)) if codec else ""
        rows.append(f'<tr><td>{_e(label)}{rate_note}</td><td>{_e(kbps)}</td><td class="scores">{cell}</td>'
                    f"<td>{player}</td><td>{spec}</td></tr>")
    # the scores of every metric share one wrapping cell: the table keeps its width (fits a 1280 px laptop
    # screen) however many metrics the run scored
    head = "<tr><th>version</th><th>kbps</th><th>scores</th><th>listen</th><th>spectrogram</th></tr>"
    return (f"<h3>{_e(item_id)} <span class=\"note\">({_e(domain)}; {_e(why)}; excerpt from "
            f"{start_s:.2f} s)</span></h3><table class=\"listen\">{head}{''.join(rows)}</table>")


def _version_scores(data: RunData, item_id: str, codec: str | None, op: str | None) -> tuple[str, list[str]]:
    """Measured kbps and one score cell per metric for one version of an item (blank for the reference)."""
    metrics = data.metrics
    if codec is None:
        return "", ["" for _ in metrics]
    res = data.results
    r = res[(res["item_id"] == item_id) & (res["codec"] == codec) & (res["op"] == op)]
    kbps = ""
    if len(r):
        kbps = fmt(r["measured_kbps"].dropna().iloc[0]) if r["measured_kbps"].notna().any() else ""
    scores = []
    for m in metrics:
        v = r[(r["metric"] == m)]
        scores.append(fmt(v["value"].iloc[0]) if len(v) and v["status"].iloc[0] == "ok" else
                      ("failed" if len(v) else "n/a"))
    return kbps, scores


# --- the page -----------------------------------------------------------------------------------

def write_html(report: Report, out_dir: str | Path, *, audio_source: AudioSource | None = None,
               excerpt_s: float = 5.0, target_kbps: float | None = None, single_file: bool = False) -> Path:
    """Write ``out_dir/index.html`` (plots must already be in ``report.plots``; copied in if elsewhere).

    index.html is a page of a folder: it links ``plots/`` and ``audio/`` beside it (move the folder, not
    the file). ``single_file`` also writes ``report.html``, the same page with every image and clip
    embedded (``data:`` URIs), to mail or attach as one file; that path is returned then.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sec = [_rd_section(report, out_dir), _bd_section(report), _summary_section(report)]
    sec.append(set_level.html_section(report.data, _table))
    sec.append('<h2 id="paired">Paired comparisons at matched operating points</h2>'
               + _table(paired_rows(report), verdict_col="verdict"))
    sec.append('<h2 id="counts">Counts</h2><p class="note">Per metric and operating point: items scored, failed '
               "(with reasons), not applicable (the metric does not apply to the item), missing (not yet run).</p>"
               + _table(counts_rows(report)))
    sec.append('<h2 id="efficiency">Efficiency</h2><p class="note">RTF = processing seconds / audio seconds on the '
               "run's device (below 1 is faster than real time).</p>" + _table(efficiency_rows(report))
               + "".join(f'<p class="note">{_e(n)}</p>' for n in memory_note_lines(report))
               + _time_section(report))
    sec.append('<h2 id="listen">Listening examples</h2>'
               + listening_section(report, out_dir, audio_source, excerpt_s=excerpt_s, target_kbps=target_kbps))
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in report.codec_notes())
    sec.append('<h2 id="codecs">Codecs and checkpoints</h2>' + _table(report.codec_rows()) + notes)
    manifest = html.escape(json.dumps(report.data.manifest, indent=1, sort_keys=True, default=str))
    sec.append('<h2 id="metrics">Metrics and models</h2>' + _table(metric_rows(report)))
    sec.append(f'<h2 id="methods">Methods</h2><p class="note">{_e(report.methods)}</p>'
               f"<details><summary>Run manifest</summary><pre>{manifest}</pre></details>")
    path = out_dir / "index.html"
    page = _page(report.header(), "".join(sec))
    path.write_text(page, encoding="utf-8")
    if single_file:
        single = out_dir / SINGLE_FILE
        single.write_text(inline_assets(page, out_dir), encoding="utf-8")
        return single
    return path


SINGLE_FILE = "report.html"
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".wav": "audio/wav", ".flac": "audio/flac"}
_SRC = re.compile(r'(<(?:img|audio)\b[^>]*?\ssrc=")([^"]+)(")')


def inline_assets(page: str, base: Path) -> str:
    """``page`` with each relative ``src`` of an image or audio element replaced by a ``data:`` URI of the file.

    A file that is missing stays a link (and the page says nothing new about it: the listening section
    already lists unavailable versions).
    """
    import base64

    def embed(m: re.Match[str]) -> str:
        rel = html.unescape(m.group(2))
        path = base / rel
        mime = _MIME.get(path.suffix.lower())
        if rel.startswith(("data:", "http:", "https:", "/")) or mime is None or not path.is_file():
            return m.group(0)
        return f"{m.group(1)}data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}{m.group(3)}"

    return _SRC.sub(embed, page)


def _time_section(report: Report) -> str:
    """Where the run's time went: per codec@op, per metric, and the run's totals with the overhead ratio."""
    return (f'<h3 id="time">Where the run\'s time went</h3><p class="note">{_e(TIME_TEXT)}</p>'
            f"<h4>Codecs</h4>{_table(time_codec_rows(report))}<h4>Metrics</h4>{_table(time_metric_rows(report))}"
            f'<h4>Totals</h4>{_table(time_total_rows(report))}<p class="note">{_e(OVERHEAD_MEANING)}</p>')


def _rd_section(report: Report, out_dir: Path) -> str:
    """The R-D figures, each copied into ``out_dir/plots`` when it was drawn elsewhere."""
    sec = ['<h2 id="rd">Rate-distortion curves</h2><p class="note">x: measured kbps (hollow markers: nominal); '
           "y: mean with 95% cluster-bootstrap CI band; one line per checkpoint and mode; dashed grey (drawn behind the curves): Pareto frontier "
           "across codecs; red ring: mean over a different item set than its neighbours.</p>"]
    for metric, path in sorted(report.plots.items()):
        path = Path(path)
        if not path.resolve().is_relative_to(out_dir.resolve()):
            dest = out_dir / "plots" / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            path = dest
        rel = path.resolve().relative_to(out_dir.resolve()).as_posix()
        sec.append(f'<figure><img src="{_e(rel)}" alt="R-D curve {_e(metric)}"><figcaption class="note">'
                   f"{_e(metric)} ({_e(report.data.info(metric).better)} is better)</figcaption></figure>")
    return "".join(sec)


def _bd_section(report: Report) -> str:
    """BD-rate and BD-quality against the reference codec: all items, then per domain folded away."""
    sec = ['<h2 id="bd">BD-rate and BD-quality</h2><p class="note">Against '
           f"{_e(report.data.label(report.reference) if report.reference else 'no reference')}. Negative BD-rate: "
           "fewer bits for the same quality. BD-quality: mean metric difference at equal rate (metric units; "
           "its sign is better or worse according to the metric's direction). A dash means the curves do not "
           "overlap enough; the note says why.</p>"]
    bd_all = [r for r in bd_rows(report) if r["domain"] == "all"]
    bd_dom = [r for r in bd_rows(report) if r["domain"] != "all"]
    sec.append(_table(bd_all))
    if bd_dom:
        sec.append(f"<details><summary>Per domain ({len(bd_dom)} rows)</summary>{_table(bd_dom)}</details>")
    return "".join(sec)


def _summary_section(report: Report) -> str:
    """One summary table per metric and (dataset, domain); the per-domain ones folded away."""
    sec = [f'<h2 id="tables">Summary tables</h2><p class="note">{_e(FOOTNOTES)}</p>']
    s = report.summary
    for metric in sorted(set(s["metric"])):
        info = report.data.info(metric)
        blocks = s[s["metric"] == metric][["dataset", "domain"]].drop_duplicates().itertuples(index=False)
        per_domain = []
        for dataset, domain in blocks:
            head = (f"{_e(metric_heading(info))} ({_e(info.better)} is better{', ' + _e(info.unit) if info.unit else ''})"
                    f" — {_e(dataset)} / {_e(domain)}" + (f' <span class="note">{_e(info.model)}</span>' if info.model else ""))
            table = _table(summary_rows(report, dataset, domain, metric))
            if domain == "all":
                sec.append(f"<h3>{head}</h3>{table}")
            else:
                per_domain.append(f"<h4>{head}</h4>{table}")
        if per_domain:
            sec.append(f"<details><summary>{_e(metric)} per domain</summary>{''.join(per_domain)}</details>")
    return "".join(sec)


def _page(h: dict[str, Any], body: str) -> str:
    """The whole document around the sections: title, run line, navigation, inline CSS."""
    title = f"Codec benchmark: {', '.join(h['datasets']) or 'run'}"
    guessed = (f"<p>Direction guessed from the name for: {_e(', '.join(h['direction_guessed']))}</p>"
               if h["direction_guessed"] else "")
    banner = "".join(f'<p class="banner"><strong>{_e(h[k])}</strong></p>' for k in ("partial_run", "banner") if h.get(k))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>{banner}<header><h1>{_e(title)}</h1>
<p>Run <code>{_e(h['run_id'])}</code> · {h['n_items']} items · split {_e(', '.join(h['splits']) or '-')} ·
codecs: {_e(', '.join(h['codec_labels'][c] for c in h['codecs']))} · metrics: {_e(', '.join(h['metrics']))}</p>
<p>Reference codec: {_e(h['reference_label'] or 'none')}</p>{guessed}</header>
<nav><a href="#rd">R-D curves</a><a href="#bd">BD-rate</a><a href="#tables">Tables</a><a href="#paired">Paired tests</a>
<a href="#counts">Counts</a><a href="#efficiency">Efficiency</a><a href="#listen">Listening</a><a href="#codecs">Codecs</a><a href="#methods">Methods</a></nav>
<main>{body}</main></body></html>
"""
