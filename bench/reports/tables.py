"""The report's tables, computed from one run: summary with CIs, BD deltas, paired tests, counts, efficiency.

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
                rows.append({
                    "dataset": dataset, "metric": metric, "codec": codec, "label": data.label(codec),
                    "op": p.op, "kbps": p.measured_kbps, "reference": reference, "ref_op": match.op,
                    "ref_kbps": match.measured_kbps, "n_items": int(len(common)),
                    "n_clusters": int(len(set(clusters))),
                    "mean_diff": float(diff.mean()), "p_value": stats.wilcoxon_p(diff, clusters),
                    "_oriented": float(sign * diff.mean()),
                })
    adjusted = stats.holm([r["p_value"] for r in rows])
    for r, p_adj in zip(rows, adjusted):
        r["p_holm"] = p_adj
        if math.isfinite(p_adj) and p_adj < alpha and r["_oriented"] != 0:
            r["verdict"] = "better" if r["_oriented"] > 0 else "worse"
        else:
            r["verdict"] = "no significant difference"
        del r["_oriented"]
    return pd.DataFrame(rows)


def _reasons(texts: Iterable[Any], limit: int = 3) -> str:
    """The most common reasons with their counts, each cut to 120 characters (blank ones named as such)."""
    c = Counter(str(t) if isinstance(t, str) and t else "(no reason recorded)" for t in texts)
    return "; ".join(f"{reason[:120]} (x{n})" for reason, n in c.most_common(limit))


def counts_table(data: RunData) -> pd.DataFrame:
    """Per metric and (codec, op): items scored, failed (with reasons), not applicable, missing."""
    import pandas as pd

    rows = []
    n_total = len(data.items)
    pairs = sorted(set(zip(data.results["codec"], data.results["op"])) | set(zip(data.coded["codec"], data.coded["op"])))
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
                "not_applicable_reasons": _reasons(s["reason"], 1) if len(s) else "",
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
    for (codec, op), g in c.groupby(["codec", "op"], sort=True):
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
            "encode_rtf": float(enc[ok & np.isfinite(enc)].sum() / audio[ok & np.isfinite(enc)].sum()) if (ok & np.isfinite(enc)).any() else math.nan,
            "decode_rtf": float(dec[ok & np.isfinite(dec)].sum() / audio[ok & np.isfinite(dec)].sum()) if (ok & np.isfinite(dec)).any() else math.nan,
            "audio_s": float(audio[ok].sum()),
            "checkpoint_hash": _short_hash(_first_key(info, ("checkpoint_hash", "hash"))),
        })
    return pd.DataFrame(rows)
