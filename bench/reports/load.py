"""Read one run from ``RUN_DIR/results.sqlite`` into pandas frames for the reports and the gate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Metrics whose smaller values are better, used only when neither the run manifest nor the
# metric registry says (a report of an old run whose metric has since been renamed, say).
_LOWER_IS_BETTER_HINTS = ("distance", "lsd", "wer", "cer", "error", "gdd", "loss", "mse", "mae", "delay")


@dataclass
class MetricInfo:
    """What a report needs to know of a metric: its direction (and where that came from) and unit."""

    name: str
    higher_is_better: bool
    unit: str = ""
    direction_source: str = "registry"  # "manifest", "registry" or "guess"
    display: str = ""  # the metric's own name for tables ("WER (PocketSphinx, offline fallback)"), "" = none
    model: str = ""  # model-backed metrics: which weights ("microsoft/wavlm-base-plus-sv, sha256 1a2b..."), "" = none

    @property
    def better(self) -> str:
        """``higher`` or ``lower``: which way is better, for captions."""
        return "higher" if self.higher_is_better else "lower"


def metric_info(name: str, manifest: dict[str, Any] | None = None) -> MetricInfo:
    """Direction and unit of a metric: from the run manifest, else the registry, else a name guess."""
    manifest = manifest or {}
    for key in ("metrics", "metric_specs"):
        m = manifest.get(key)
        if isinstance(m, dict) and isinstance(m.get(name), dict) and "higher_is_better" in m[name]:
            entry = m[name]
            return MetricInfo(name, bool(entry["higher_is_better"]), str(entry.get("unit", "")), "manifest",
                              str(entry.get("display_name") or ""), model_text(entry.get("model")))
    try:
        from bench.metrics.base import get_metric

        spec = get_metric(name)
        return MetricInfo(name, bool(spec.higher_is_better), spec.unit, "registry", spec.display_name)
    except Exception:  # noqa: BLE001 - unknown or broken metric module: fall back to the name
        lower = any(h in name.lower() for h in _LOWER_IS_BETTER_HINTS)
        return MetricInfo(name, not lower, "", "guess")


def model_text(model: Any) -> str:
    """A manifest's metric model entry in words: ``"openai/whisper-large-v3, weights sha256 1a2b3c4d5e6f"``.

    Other entries of the model info (normaliser, decoding settings) follow as ``key value``; weights that were
    missing when the run started say so (the metric's rows are NaN with that reason).
    """
    if not isinstance(model, dict):
        return ""
    parts = [str(model.get("model") or "model")]
    if model.get("weights_sha256"):
        parts.append(f"weights sha256 {str(model['weights_sha256'])[:12]}")
    elif model.get("error"):
        parts.append("weights missing")
    parts += [f"{k} {v}" for k, v in model.items() if k not in {"model", "weights_sha256", "error", "folder", "env"}]
    return ", ".join(parts)


def display_codec(key: str, info: dict[str, Any] | None = None) -> str:
    """Label of a codec naming its checkpoint (``dac[small]*``, ``dac[ckpt]``; see ``bench.reports.provenance``).

    Without the run's codec ``info`` (no weights hash known): ``dac:/a/b/ckpt.safetensors`` -> ``dac:ckpt``.
    """
    from bench.reports.provenance import codec_label

    return codec_label(key, info)


def _find_setting(manifest: dict[str, Any], key: str) -> Any:
    """A setting from the manifest, top level or under ``settings``/``config``."""
    if key in manifest:
        return manifest[key]
    for sub in ("settings", "config", "run_config"):
        d = manifest.get(sub)
        if isinstance(d, dict) and key in d:
            return d[key]
    return None


@dataclass
class RunData:
    """One run's tables. ``results`` is joined with item metadata (dataset, domain, cluster)."""

    run_dir: Path
    db_path: Path
    run_id: str
    manifest: dict[str, Any]
    items: Any  # pandas.DataFrame
    coded: Any
    results: Any
    skipped: Any
    codec_info: dict[str, dict[str, Any]]
    other_runs: list[str] = field(default_factory=list)
    metric_infos: dict[str, MetricInfo] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        """Every metric the run scored or skipped, sorted."""
        names = set(self.results["metric"].unique()) | set(self.skipped["metric"].unique())
        return sorted(names)

    @property
    def codecs(self) -> list[str]:
        """Every codec selection key with results or coded rows, sorted."""
        names = set(self.results["codec"].unique()) | set(self.coded["codec"].unique())
        return sorted(names)

    def ops(self, codec: str) -> list[str]:
        """Operating points of a codec ordered by nominal kbps."""
        rows = self.results[self.results["codec"] == codec][["op", "nominal_kbps"]]
        rows = rows.drop_duplicates("op").sort_values("nominal_kbps")
        return list(rows["op"])

    def info(self, metric: str) -> MetricInfo:
        """The metric's direction and unit (manifest, else registry, else a name guess), looked up once."""
        if metric not in self.metric_infos:
            self.metric_infos[metric] = metric_info(metric, self.manifest)
        return self.metric_infos[metric]

    def label(self, codec: str) -> str:
        """The codec's label with its checkpoint, from the run's codec info (see :func:`display_codec`)."""
        return display_codec(codec, self.codec_info.get(codec))

    def setting(self, key: str) -> Any:
        """A run setting from the manifest (top level or under ``settings``), or None."""
        return _find_setting(self.manifest, key)


def resolve_db(run_dir: str | Path) -> Path:
    """``RUN_DIR/results.sqlite`` (or the path itself when it is a .sqlite file)."""
    p = Path(run_dir)
    if p.is_file():
        return p
    db = p / "results.sqlite"
    if not db.exists():
        from bench.store import StoreError

        what = "no such folder" if not p.exists() else "no results.sqlite here"
        raise StoreError(f"{p}: {what}; is this a run directory made by 'bench run'?")
    return db


def load_run(run_dir: str | Path, run_id: str | None = None) -> RunData:
    """Load the latest run (or ``run_id``) of a run directory."""
    from bench.deps import require

    require(["pandas"], "reading a run's results")
    import pandas as pd

    from bench.store import Store

    db = resolve_db(run_dir)
    with Store(db, readonly=True) as store:
        ids = store.run_ids()
        run_id = store.resolve_run_id(run_id)
        manifest = store.manifest(run_id)
        items = store.frame("items", run_id)
        coded = store.frame("coded", run_id)
        results = store.frame("results", run_id)
        skipped = store.frame("skipped", run_id)
        info_rows = store.frame("codec_info", run_id)
    codec_info: dict[str, dict[str, Any]] = {}
    for _, row in info_rows.iterrows():
        try:
            codec_info[row["codec"]] = json.loads(row["info"]) if row["info"] else {}
        except json.JSONDecodeError:
            codec_info[row["codec"]] = {"raw": row["info"]}

    items = items.copy()
    cluster = []
    for _, r in items.iterrows():
        c = next((x for x in (r.get("speaker"), r.get("track")) if isinstance(x, str) and x), None)
        cluster.append(c or r["item_id"])
    items["cluster"] = cluster
    items["domain"] = items["domain"].fillna("unknown")
    items["dataset"] = items["dataset"].fillna("")
    meta = items[["item_id", "dataset", "domain", "cluster"]]
    results = results.merge(meta, on="item_id", how="left")
    results["domain"] = results["domain"].fillna("unknown")
    results["dataset"] = results["dataset"].fillna("")
    results["cluster"] = results["cluster"].fillna(results["item_id"])
    results["value"] = pd.to_numeric(results["value"], errors="coerce")
    for col in ("nominal_kbps", "measured_kbps", "compute_s"):  # compute_s: NaN for runs made before it
        results[col] = pd.to_numeric(results[col], errors="coerce")
    base = Path(run_dir) if Path(run_dir).is_dir() else db.parent
    return RunData(base, db, run_id, manifest, items, coded, results, skipped, codec_info,
                   [i for i in ids if i != run_id])


def finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (False for None, text and NaN alike)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
