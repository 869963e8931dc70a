"""The report's tables, computed from one run: summary with CIs, BD deltas, paired tests, counts, efficiency
and where the run's time went.

Every function returns a pandas DataFrame with plain columns so the same numbers go to CSV,
JSON, markdown and HTML.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from bench.reports import rd, stats
from bench.reports.load import RunData
from bench.reports.provenance import short_label

if TYPE_CHECKING:
    import pandas as pd

ALL = "all"
MATCH_RATIO = 1.25  # operating points within this factor of measured kbps count as "matched"


def _subset(frame: pd.DataFrame, dataset: str, domain: str) -> pd.DataFrame:
    """The rows of one dataset, and of one domain unless ``domain`` is ``all``."""
    sub = frame[frame["dataset"] == dataset]
    return sub if domain == ALL else sub[sub["domain"] == domain]


def measured_rate(data: RunData, codec: str, op: str, item_ids: set[str] | None = None) -> float:
    """Measured kbps over items: total bits / total audio seconds from ``coded``; else mean of rows."""
    c = data.coded
    rows = c[(c["codec"] == codec) & (c["op"] == op)]
    if item_ids is not None:
        rows = rows[rows["item_id"].isin(item_ids)]
    rows = rows[rows["status"].fillna("ok") == "ok"]
    if len(rows):
        nb, secs = rows["n_bytes"].astype(float), rows["audio_s"].astype(float)
        ok = np.isfinite(nb) & np.isfinite(secs) & (secs > 0)
        if ok.any():
            return float(nb[ok].sum() * 8.0 / secs[ok].sum() / 1000.0)
        m = rows["measured_kbps"].astype(float)
        if np.isfinite(m).any():
            return float(np.nanmean(m))
    r = data.results
    rows = r[(r["codec"] == codec) & (r["op"] == op)]
    if item_ids is not None:
        rows = rows[rows["item_id"].isin(item_ids)]
    m = rows["measured_kbps"].astype(float)
    return float(np.nanmean(m)) if np.isfinite(m).any() else math.nan


def summary(data: RunData, *, n_boot: int = stats.DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, domain, metric, codec, op): rates, mean, 95% cluster-bootstrap CI, counts.

    ``same_items`` is False where the mean is over a different item set than most rows of the same
    (dataset, domain, metric) block: such a mean is not directly comparable and is marked.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    res = data.results
    for dataset in sorted(set(data.items["dataset"])):
        in_dataset = res[res["dataset"] == dataset]
        for metric in sorted(set(in_dataset["metric"])):
            info = data.info(metric)
            scored_domains = sorted(set(in_dataset.loc[in_dataset["metric"] == metric, "domain"]))
            for domain in [ALL] + (scored_domains if len(scored_domains) > 1 else []):
                sub = _subset(res, dataset, domain)
                domain_items = set(_subset(data.items, dataset, domain)["item_id"])
                block = sub[sub["metric"] == metric]
                block_rows = []
                for (codec, op), g in block.groupby(["codec", "op"], sort=True):
                    ok = g[(g["status"] == "ok") & np.isfinite(g["value"])]
                    ci = stats.bootstrap_ci(ok["value"].to_numpy(), list(ok["cluster"]), n_boot=n_boot, seed=seed)
                    skipped = data.skipped
                    n_skip = int(((skipped["codec"] == codec) & (skipped["op"] == op) & (skipped["metric"] == metric)
                                  & skipped["item_id"].isin(domain_items)).sum())
                    block_rows.append({
                        "dataset": dataset, "domain": domain, "metric": metric, "codec": codec,
                        "label": data.label(codec), "op": op,
                        "nominal_kbps": float(g["nominal_kbps"].dropna().iloc[0]) if g["nominal_kbps"].notna().any() else math.nan,
                        "measured_kbps": measured_rate(data, codec, op, domain_items),
                        "mean": ci.mean, "ci_lo": ci.lo, "ci_hi": ci.hi,
                        "n_items": ci.n_items, "n_clusters": ci.n_clusters,
                        "n_failed": int((g["status"] != "ok").sum() + ((g["status"] == "ok") & ~np.isfinite(g["value"])).sum()),
                        "n_not_applicable": n_skip,
                        "higher_is_better": info.higher_is_better, "unit": info.unit,
                        "_items": frozenset(ok["item_id"]),
                    })
                modal = Counter(r["_items"] for r in block_rows).most_common(1)
                modal_set = modal[0][0] if modal else frozenset()
                for r in block_rows:
                    r["same_items"] = r["_items"] == modal_set
                    del r["_items"]
                rows.extend(block_rows)
    cols = ["dataset", "domain", "metric", "codec", "label", "op", "nominal_kbps", "measured_kbps", "mean",
            "ci_lo", "ci_hi", "n_items", "n_clusters", "n_failed", "n_not_applicable", "same_items",
            "higher_is_better", "unit"]
    return pd.DataFrame(rows, columns=cols)


def curves(summary_df: pd.DataFrame, dataset: str, domain: str, metric: str) -> dict[str, rd.Curve]:
    """R-D curves (one per codec) for one block of the summary."""
    block = summary_df[(summary_df["dataset"] == dataset) & (summary_df["domain"] == domain)
                       & (summary_df["metric"] == metric)]
    out: dict[str, rd.Curve] = {}
    for codec, g in block.groupby("codec", sort=True):
        pts = [rd.RDPoint(codec, r.op, r.nominal_kbps, r.measured_kbps, r.mean, r.ci_lo, r.ci_hi, int(r.n_items))
               for r in g.itertuples()]
        out[codec] = rd.Curve(codec, pts).sorted()
    return out


def default_reference(data: RunData) -> str | None:
    """Opus when present (the codec a user would pick instead), else the codec with most operating points."""
    codecs = data.codecs
    if not codecs:
        return None
    if "opus" in codecs:
        return "opus"
    return max(codecs, key=lambda c: (len(data.ops(c)), c))


def resolve_reference(data: RunData, reference: str | None) -> str | None:
    """Accept a selection key or a display label or a family name; error on an unknown codec."""
    if reference is None:
        return default_reference(data)
    codecs = data.codecs
    if reference in codecs:
        return reference
    by_label = [c for c in codecs
                if reference in (short_label(c), data.label(c)) or c.split(":", 1)[0] == reference]
    if len(by_label) == 1:
        return by_label[0]
    from bench.errors import UserError
    from bench.registry import did_you_mean

    raise UserError(f"--reference {reference!r} is not a codec of this run.{did_you_mean(reference, codecs)}")


def bd_table(data: RunData, summary_df: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """BD-rate (%) and BD-quality of every codec against ``reference``, per dataset, domain, metric."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if reference is None:
        return pd.DataFrame(rows)
    for (dataset, domain, metric), _ in summary_df.groupby(["dataset", "domain", "metric"], sort=True):
        cs = curves(summary_df, dataset, domain, metric)
        ref = cs.get(reference)
        for codec, cur in cs.items():
            if codec == reference:
                continue
            if ref is None:
                rows.append({"dataset": dataset, "domain": domain, "metric": metric, "codec": codec,
                             "label": data.label(codec), "reference": reference, "bd_rate_pct": math.nan,
                             "bd_quality": math.nan, "n_points": len(cur.points), "n_points_ref": 0,
                             "overlap_quality": "", "overlap_kbps": "",
                             "note": f"reference {reference} has no scores for {metric}"})
                continue
            br = rd.bd_rate(ref.rates, ref.qualities, cur.rates, cur.qualities)
            bq = rd.bd_quality(ref.rates, ref.qualities, cur.rates, cur.qualities)
            if br.note and br.note == bq.note:
                notes = [br.note]
            else:
                notes = [f"{tag}: {res.note}" for tag, res in (("BD-rate", br), ("BD-quality", bq)) if res.note]
            rows.append({
                "dataset": dataset, "domain": domain, "metric": metric, "codec": codec,
                "label": data.label(codec), "reference": reference,
                "bd_rate_pct": br.value, "bd_quality": bq.value,
                "n_points": len(cur.points), "n_points_ref": len(ref.points),
                "overlap_quality": f"{br.overlap_lo:.4g}..{br.overlap_hi:.4g}" if math.isfinite(br.overlap_lo) else "",
                "overlap_kbps": f"{bq.overlap_lo:.3g}..{bq.overlap_hi:.3g}" if math.isfinite(bq.overlap_lo) else "",
                "note": "; ".join(notes),
            })
    return pd.DataFrame(rows)


def paired_table(data: RunData, summary_df: pd.DataFrame, reference: str | None, *, alpha: float = 0.05,
                 match_ratio: float = MATCH_RATIO) -> pd.DataFrame:
    """Per-item paired comparisons of each codec against the reference at matched operating points.

    For every (codec, op) the reference op with the nearest measured kbps (within ``match_ratio``)
    is paired with it on the items both scored. Wilcoxon signed-rank over cluster means; Holm's
    correction over all comparisons of the table; verdict better / worse / no significant difference.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if reference is None:
        return pd.DataFrame(rows)
    res = data.results
    ok = res[(res["status"] == "ok") & np.isfinite(res["value"])]
    for (dataset, metric), _ in summary_df[summary_df["domain"] == ALL].groupby(["dataset", "metric"], sort=True):
        cs = curves(summary_df, dataset, ALL, metric)
        ref = cs.get(reference)
        if ref is None:
            continue
        info = data.info(metric)
        sign = 1.0 if info.higher_is_better else -1.0
        block = ok[(ok["dataset"] == dataset) & (ok["metric"] == metric)]
        for codec, cur in cs.items():
            if codec == reference:
                continue
            for p in cur.points:
                match = rd.nearest_point(ref, p.measured_kbps, match_ratio)
                if match is None:
                    continue
                a = block[(block["codec"] == codec) & (block["op"] == p.op)].set_index("item_id")
                b = block[(block["codec"] == reference) & (block["op"] == match.op)].set_index("item_id")
                common = a.index.intersection(b.index)
                if len(common) == 0:
                    continue
                diff = a.loc[common, "value"].to_numpy() - b.loc[common, "value"].to_numpy()
                clusters = list(a.loc[common, "cluster"])
                n_test = int(np.count_nonzero(stats.cluster_means(diff, clusters)))
                rows.append({
                    "dataset": dataset, "metric": metric, "codec": codec, "label": data.label(codec),
                    "op": p.op, "kbps": p.measured_kbps, "reference": reference, "ref_op": match.op,
                    "ref_kbps": match.measured_kbps, "n_items": int(len(common)),
                    "n_clusters": int(len(set(clusters))),
                    "mean_diff": float(diff.mean()), "p_value": stats.wilcoxon_p(diff, clusters),
                    "n_test": n_test, "min_p": stats.min_attainable_p(n_test),
                    "higher_is_better": bool(info.higher_is_better),
                    "_oriented": float(sign * diff.mean()),
                })
    _add_verdicts(rows, alpha)
    return pd.DataFrame(rows)


def _add_verdicts(rows: list[dict[str, Any]], alpha: float) -> None:
    """Holm-adjust the testable rows and say each outcome in words.

    A comparison whose smallest attainable p is not below ``alpha`` can never be significant: it gets
    no Holm p (it is left out of the correction, as Tarone's method allows) and a verdict saying why.
    Direction words follow the metric's ``higher_is_better`` (``_oriented`` > 0 means better).
    """
    testable = [r["min_p"] < alpha for r in rows]
    adjusted = stats.holm([r["p_value"] if t else math.nan for r, t in zip(rows, testable)])
    for r, p_adj, t in zip(rows, adjusted, testable):
        r["p_holm"] = p_adj
        if not t:
            r["verdict"] = stats.too_few_text(r["n_test"], alpha)
        elif math.isfinite(p_adj) and p_adj < alpha and r["_oriented"] != 0:
            r["verdict"] = "better" if r["_oriented"] > 0 else "worse"
        else:
            r["verdict"] = "no significant difference"
        del r["_oriented"]


def _reasons(texts: Iterable[Any], limit: int | None = 3) -> str:
    """The most common reasons with their counts (all of them when ``limit`` is None), each cut to 120
    characters (blank ones named as such)."""
    c = Counter(str(t) if isinstance(t, str) and t else "(no reason recorded)" for t in texts)
    return "; ".join(f"{reason[:120]} (x{n})" for reason, n in c.most_common(limit))


def _pairs_by_rate(data: RunData) -> list[tuple[str, str]]:
    """Every (codec, op) of the results and coded tables, by codec, then nominal kbps as a number, then op."""
    rate: dict[tuple[str, str], float] = {}
    if "nominal_kbps" in data.coded:
        for codec, op, kbps in zip(data.coded["codec"], data.coded["op"], data.coded["nominal_kbps"]):
            rate[(codec, op)] = min(rate.get((codec, op), math.inf), _nominal_kbps(kbps))
    pairs = set(zip(data.results["codec"], data.results["op"])) | set(zip(data.coded["codec"], data.coded["op"]))
    return sorted(pairs, key=lambda p: (str(p[0]), rate.get(p, math.inf), str(p[1])))


def counts_table(data: RunData) -> pd.DataFrame:
    """Per metric and (codec, op): items scored, failed (with reasons), not applicable, missing."""
    import pandas as pd

    rows = []
    n_total = len(data.items)
    pairs = _pairs_by_rate(data)
    coded_failed = data.coded[data.coded["status"].fillna("ok") != "ok"]
    for metric in data.metrics:
        r_m = data.results[data.results["metric"] == metric]
        s_m = data.skipped[data.skipped["metric"] == metric]
        for codec, op in pairs:
            r = r_m[(r_m["codec"] == codec) & (r_m["op"] == op)]
            s = s_m[(s_m["codec"] == codec) & (s_m["op"] == op)]
            good = (r["status"] == "ok") & np.isfinite(r["value"])
            bad = r[~good]
            cf = coded_failed[(coded_failed["codec"] == codec) & (coded_failed["op"] == op)
                              & ~coded_failed["item_id"].isin(r["item_id"]) & ~coded_failed["item_id"].isin(s["item_id"])]
            seen = set(r["item_id"]) | set(s["item_id"]) | set(cf["item_id"])
            rows.append({
                "metric": metric, "codec": codec, "label": data.label(codec), "op": op,
                "scored": int(good.sum()), "failed": int(len(bad) + len(cf)),
                "not_applicable": int(len(s)), "missing": int(max(0, n_total - len(seen))),
                "failure_reasons": _reasons(list(bad["error"]) + [f"codec: {e}" for e in cf["error"]]) if len(bad) + len(cf) else "",
                "not_applicable_reasons": _reasons(s["reason"], None) if len(s) else "",
            })
    return pd.DataFrame(rows)


def _first_key(info: dict[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        if n in info and info[n] is not None:
            return info[n]
    return None


def _peak_memory_mb(info: dict[str, Any]) -> float:
    for k, v in info.items():
        kl = k.lower()
        if "peak" in kl and isinstance(v, (int, float)):
            if kl.endswith(("_bytes", "bytes")):
                return float(v) / 2**20
            if kl.endswith(("_gb", "gib")):
                return float(v) * 1024
            return float(v)
    return math.nan


def _short_hash(h: Any) -> str:
    """First 12 characters of a hex digest; other identifiers ("libopus 1.5.2") in full."""
    text = "" if h is None else str(h)
    if len(text) > 16 and all(ch in "0123456789abcdef" for ch in text.lower()):
        return text[:12]
    return text


def efficiency_table(data: RunData) -> pd.DataFrame:
    """Per (codec, op): parameters, device, peak memory and encode/decode real-time factors.

    Real-time factor = processing seconds / audio seconds (below 1 is faster than real time),
    summed over the items the run coded.
    """
    import pandas as pd

    rows = []
    c = data.coded
    for (codec, op), g in _by_codec_and_rate(c):
        g = g[g["status"].fillna("ok") == "ok"]
        audio = g["audio_s"].astype(float)
        enc, dec = g["encode_s"].astype(float), g["decode_s"].astype(float)
        ok = np.isfinite(audio) & (audio > 0)
        info = data.codec_info.get(codec, {})
        params = _first_key(info, ("num_parameters", "parameters", "n_params", "params"))
        rows.append({
            "codec": codec, "label": data.label(codec), "op": op,
            "parameters": int(params) if isinstance(params, (int, float)) and math.isfinite(params) else None,
            "device": _first_key(info, ("device",)) or "",
            "peak_memory_mb": _peak_memory_mb(info),
            "memory_kind": str(info.get("peak_memory_kind") or "not recorded"),
            "encode_rtf": float(enc[ok & np.isfinite(enc)].sum() / audio[ok & np.isfinite(enc)].sum()) if (ok & np.isfinite(enc)).any() else math.nan,
            "decode_rtf": float(dec[ok & np.isfinite(dec)].sum() / audio[ok & np.isfinite(dec)].sum()) if (ok & np.isfinite(dec)).any() else math.nan,
            "audio_s": float(audio[ok].sum()),
            "checkpoint_hash": _short_hash(_first_key(info, ("checkpoint_hash", "hash"))),
        })
    return pd.DataFrame(rows)


def _nominal_kbps(value: Any) -> float:
    """A nominal rate as a number for sorting (unknown ones sort last)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.inf
    return f if math.isfinite(f) else math.inf


def _by_codec_and_rate(frame: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """``frame`` grouped by (codec, op), ordered by codec, then nominal kbps as a number, then op."""
    groups = list(frame.groupby(["codec", "op"], sort=False))
    return sorted(groups, key=lambda kg: (str(kg[0][0]), _nominal_kbps(kg[1]["nominal_kbps"].min()), str(kg[0][1])))


def _total_s(values: Any) -> float:
    """Sum of the finite entries of ``values``; NaN (not recorded) when there is none, never 0."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    return float(v[ok].sum()) if ok.any() else math.nan


def _per_audio_s(seconds: Any, audio_s: Any) -> float:
    """Seconds of work per audio second over the rows where both are recorded (NaN when none are)."""
    s_, a = np.asarray(seconds, dtype=float), np.asarray(audio_s, dtype=float)
    ok = np.isfinite(s_) & np.isfinite(a) & (a > 0)
    return float(s_[ok].sum() / a[ok].sum()) if ok.any() else math.nan


def _joined(texts: Iterable[Any]) -> str:
    """The distinct non-empty strings of ``texts``, in order of first appearance, joined with '; '."""
    seen: dict[str, None] = {}
    for t in texts:
        if isinstance(t, str) and t:
            seen.setdefault(t, None)
    return "; ".join(seen)


def time_codecs(data: RunData) -> pd.DataFrame:
    """Per (codec, op): encode and decode seconds summed over the coded rows, and their RTFs.

    Every row that recorded a time counts (a failed decode took time too); RTF = seconds per audio
    second over the rows with both recorded. ``timing`` is how the runner attributed the seconds
    (batched work split over its items, say), where it said. NaN means not recorded, never 0.
    """
    import pandas as pd

    c = data.coded.copy()
    if "timing" not in c:
        c["timing"] = None
    rows = []
    for (codec, op), g in _by_codec_and_rate(c):
        enc, dec, audio = (pd.to_numeric(g[k], errors="coerce") for k in ("encode_s", "decode_s", "audio_s"))
        rows.append({
            "codec": codec, "label": data.label(codec), "op": op,
            "nominal_kbps": float(g["nominal_kbps"].min()) if g["nominal_kbps"].notna().any() else math.nan,
            "items": int(len(g)), "audio_s": _total_s(audio), "encode_s": _total_s(enc), "decode_s": _total_s(dec),
            "encode_rtf": _per_audio_s(enc, audio), "decode_rtf": _per_audio_s(dec, audio),
            "timing": _joined(g["timing"]),
        })
    cols = ["codec", "label", "op", "nominal_kbps", "items", "audio_s", "encode_s", "decode_s", "encode_rtf",
            "decode_rtf", "timing"]
    return pd.DataFrame(rows, columns=cols)


def _result_audio_s(data: RunData) -> Any:
    """Audio seconds behind each result row: the item's duration, else its coded row's ``audio_s``."""
    import pandas as pd

    r = data.results
    dur = pd.to_numeric(r["item_id"].map(data.items.set_index("item_id")["duration_s"]), errors="coerce")
    coded = data.coded.set_index(["item_id", "codec", "op"])["audio_s"]
    keys = pd.MultiIndex.from_arrays([r["item_id"], r["codec"], r["op"]])
    from_coded = pd.to_numeric(pd.Series(coded.reindex(keys).to_numpy(), index=r.index), errors="coerce")
    return dur.where(np.isfinite(dur), from_coded)


def time_metrics(data: RunData) -> pd.DataFrame:
    """Per metric: seconds of metric calls summed over its result rows, and seconds per audio second.

    ``rows_timed`` of ``rows`` recorded a ``compute_s`` (runs made before it was recorded have none:
    the total is NaN, not recorded, never 0; a resumed run can have some).
    """
    import pandas as pd

    r = data.results
    compute = pd.to_numeric(r["compute_s"], errors="coerce") if "compute_s" in r else pd.Series(math.nan, index=r.index)
    audio = _result_audio_s(data) if len(r) else pd.Series(dtype=float)
    rows = []
    for metric in sorted(set(r["metric"])):
        mask = r["metric"] == metric
        cs = compute[mask]
        rows.append({"metric": metric, "rows": int(mask.sum()), "rows_timed": int(np.isfinite(cs).sum()),
                     "compute_s": _total_s(cs), "s_per_audio_s": _per_audio_s(cs, audio[mask])})
    return pd.DataFrame(rows, columns=["metric", "rows", "rows_timed", "compute_s", "s_per_audio_s"])


#: what the overhead ratio of :func:`time_totals` means, for every format of the report
OVERHEAD_MEANING = ("Overhead ratio = wall time / ((codec compute + metric compute) / cores). 1.0 means every "
                    "core was busy with real work (encoding, decoding, scoring) for the whole run; 2.0 means half "
                    "of the core-seconds went to loading, waiting, scheduling or idle cores. Below 1 the measured "
                    "work overlapped beyond the CPU cores (a GPU, or timers that include waiting).")


def _manifest_timing(data: RunData) -> dict[str, Any]:
    """The run manifest's ``timing`` block (wall_s, cores, engine, workers), empty for runs without it."""
    t = data.manifest.get("timing")
    return t if isinstance(t, dict) else {}


def _number(x: Any) -> float:
    """``x`` as a float, NaN when it is missing or not a number."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def time_totals(data: RunData, codecs: pd.DataFrame | None = None, metrics: pd.DataFrame | None = None
                ) -> pd.DataFrame:
    """One row: codec compute, metric compute, wall time, cores, engine, workers and the overhead ratio.

    Compute totals come from the store's rows, wall time and cores from the manifest's ``timing``;
    anything not recorded is NaN (the ratio too), never 0. ``note`` says when only part of the
    rows carried a time (the ratio then counts only that part of the work).
    """
    import pandas as pd

    codecs = time_codecs(data) if codecs is None else codecs
    metrics = time_metrics(data) if metrics is None else metrics
    timing = _manifest_timing(data)
    codec_s = _total_s(list(codecs["encode_s"]) + list(codecs["decode_s"]))
    metric_s = _total_s(metrics["compute_s"])
    wall_s, cores = _number(timing.get("wall_s")), _number(timing.get("cores"))
    work = (0.0 if math.isnan(codec_s) else codec_s) + (0.0 if math.isnan(metric_s) else metric_s)
    known = not (math.isnan(codec_s) or math.isnan(metric_s) or math.isnan(wall_s) or math.isnan(cores))
    ratio = wall_s / (work / cores) if known and work > 0 and cores > 0 else math.nan
    untimed = int((metrics["rows"] - metrics["rows_timed"]).sum()) if len(metrics) else 0
    note = (f"{untimed} of {int(metrics['rows'].sum())} result rows recorded no compute time; the totals count "
            "the rest" if untimed and not math.isnan(metric_s) else "")
    return pd.DataFrame([{
        "codec_compute_s": codec_s, "metric_compute_s": metric_s, "wall_s": wall_s,
        "cores": int(cores) if not math.isnan(cores) else None, "engine": timing.get("engine"),
        "workers": timing.get("workers"), "overhead_ratio": ratio, "note": note,
    }])


# --- how far the run got ------------------------------------------------------------------------

def _planned_points(data: RunData) -> set[tuple[str, str]]:
    """The (codec, op) points the run meant to code: the manifest's ``codecs`` block plus any seen in rows."""
    points = set(zip(data.results["codec"], data.results["op"])) | set(zip(data.coded["codec"], data.coded["op"]))
    points |= set(zip(data.skipped["codec"], data.skipped["op"]))
    codecs = data.manifest.get("codecs")
    if isinstance(codecs, dict):
        for key, info in codecs.items():
            ops = info.get("operating_points") if isinstance(info, dict) else None
            if isinstance(ops, dict):
                points |= {(str(key), str(op)) for op in ops}
    return points


def _planned_items(data: RunData) -> int:
    """How many items the run meant to do: the manifest's dataset protocol ``n_items``, else the items table."""
    protocol = data.manifest.get("dataset")
    n = protocol.get("n_items") if isinstance(protocol, dict) else None
    if isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 0:
        return max(int(n), len(data.items))
    return int(len(data.items))


def progress(data: RunData) -> dict[str, Any]:
    """How much of the planned run is done: items and (item, codec, op) pairs, and whether it is partial.

    A pair is done when it has a result or a not-applicable row, or its coding failed (nothing more can
    come of it); an item is done when all its planned pairs are. ``text`` is the banner for a partial run
    ("partial run: N of M items done (K of P pairs)"), empty for a complete one.
    """
    points = _planned_points(data)
    failed = data.coded[data.coded["status"].fillna("ok") != "ok"]
    done = (set(zip(data.results["item_id"], data.results["codec"], data.results["op"]))
            | set(zip(data.skipped["item_id"], data.skipped["codec"], data.skipped["op"]))
            | set(zip(failed["item_id"], failed["codec"], failed["op"])))
    done = {(str(i), str(c), str(o)) for i, c, o in done if (str(c), str(o)) in points}
    per_item = Counter(i for i, _, _ in done)
    n_items, n_points = _planned_items(data), len(points)
    items_done = sum(1 for n in per_item.values() if n >= n_points) if n_points else 0
    pairs_planned = n_items * n_points
    partial = items_done < n_items or len(done) < pairs_planned
    text = (f"partial run: {items_done} of {n_items} items done ({len(done)} of {pairs_planned} pairs)"
            if partial else "")
    return {"partial": partial, "items_done": items_done, "items_planned": n_items,
            "pairs_done": len(done), "pairs_planned": pairs_planned, "text": text}


# --- tables for papers --------------------------------------------------------------------------

def _paper_rows(summary_df: pd.DataFrame) -> pd.DataFrame:
    """The all-domain summary rows ordered by dataset, codec, then kbps as a number (nominal, else measured)."""
    s = summary_df[summary_df["domain"] == ALL].copy()
    s["_kbps"] = [k if math.isfinite(k) else _nominal_kbps(m)
                  for k, m in zip(s["nominal_kbps"].map(_nominal_kbps), s["measured_kbps"])]
    return s.sort_values(["dataset", "codec", "_kbps", "op"], kind="stable")


def wide_table(summary_df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, codec, op), columns per metric: ``<metric>_mean/_ci_low/_ci_high/_n``."""
    import pandas as pd

    s = _paper_rows(summary_df)
    metrics = sorted(set(s["metric"]))
    rows = []
    for (dataset, codec, op), g in s.groupby(["dataset", "codec", "op"], sort=False):
        first = g.iloc[0]
        row: dict[str, Any] = {"dataset": dataset, "codec": codec, "label": first["label"], "op": op,
                               "nominal_kbps": first["nominal_kbps"], "measured_kbps": first["measured_kbps"]}
        by_metric = {r["metric"]: r for _, r in g.iterrows()}
        for m in metrics:
            r = by_metric.get(m)
            row[f"{m}_mean"] = r["mean"] if r is not None else math.nan
            row[f"{m}_ci_low"] = r["ci_lo"] if r is not None else math.nan
            row[f"{m}_ci_high"] = r["ci_hi"] if r is not None else math.nan
            row[f"{m}_n"] = int(r["n_items"]) if r is not None else 0
        rows.append(row)
    cols = ["dataset", "codec", "label", "op", "nominal_kbps", "measured_kbps"]
    cols += [f"{m}_{k}" for m in metrics for k in ("mean", "ci_low", "ci_high", "n")]
    return pd.DataFrame(rows, columns=cols)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: Any) -> str:
    """``text`` as literal LaTeX text (the ten special characters escaped, line breaks made spaces)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in " ".join(str(text).splitlines()))


def _tex_num(x: Any) -> str:
    """A number for the LaTeX table: 3 significant digits, ``--`` when missing."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return "--"
    return f"{f:.3g}" if math.isfinite(f) else "--"


def _tex_cell(mean: Any, lo: Any, hi: Any) -> str:
    """``mean [lo, hi]`` for one metric cell (the CI is a percentile bootstrap, so not symmetric)."""
    if not math.isfinite(_number(lo)):
        return f"${_tex_num(mean)}$"
    return f"${_tex_num(mean)}$ {{\\scriptsize $[{_tex_num(lo)}, {_tex_num(hi)}]$}}"


def latex_table(summary_df: pd.DataFrame, data: RunData, *, note: str = "") -> str:
    """A booktabs LaTeX table: codec x operating point rows (by kbps), a mean [95% CI] column per metric.

    Headers carry each metric's unit and direction; every name is LaTeX-escaped. ``note`` (a partial-run
    banner, say) goes into the caption.
    """
    wide = wide_table(summary_df)
    metrics = sorted(set(summary_df["metric"]))
    multi = len(set(wide["dataset"])) > 1
    heads = (["Dataset"] if multi else []) + ["Codec", "Op", "kbps"]
    for m in metrics:
        info = data.info(m)
        arrow = r"$\uparrow$" if info.higher_is_better else r"$\downarrow$"
        unit = f" ({tex_escape(info.unit)})" if info.unit else ""
        heads.append(f"{tex_escape(m)}{unit} {arrow}")
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             r"\begin{tabular}{" + "l" * (len(heads) - len(metrics)) + "c" * len(metrics) + "}",
             r"\toprule", " & ".join(heads) + r" \\", r"\midrule"]
    for r in wide.itertuples(index=False):
        w = dict(zip(wide.columns, r))
        cells = ([tex_escape(w["dataset"])] if multi else []) + [tex_escape(w["label"]), tex_escape(w["op"]),
                                                                _tex_num(w["measured_kbps"])]
        cells += [_tex_cell(w[f"{m}_mean"], w[f"{m}_ci_low"], w[f"{m}_ci_high"]) for m in metrics]
        lines.append(" & ".join(cells) + r" \\")
    caption = ("Mean and 95\\% cluster-bootstrap CI per codec and operating point (measured kbps); "
               "arrows: which way is better." + (f" {tex_escape(note)}." if note else ""))
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{caption}}}", r"\label{tab:codec-benchmark}",
              r"\end{table}", ""]
    return "\n".join(lines)
