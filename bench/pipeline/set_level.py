"""The set-level pass of ``bench run``: metrics with one value per set of items (FAD), after the per-item work.

For each set-level metric of the run, each codec operating point and each stratum, the set is the
stratum's items whose pair coded ok and to which the metric applies. The references are the prepared
references the codecs were given, read back from the reconstruction cache (re-prepared from the dataset
where the cache lacks one, and then checked against the input hash the reconstruction names); the
reconstructions are the cached ones. Both are mixed to mono and resampled to the embedding model's rate
with the harness's one resampler (``bench.audio``), embedded, and the metric's function gives the value
and its bootstrap CI over items (``bench.metrics.fad``). An item whose audio cannot be read is left out of
the set with the reason (``extra["excluded"]``); missing weights or a set too small give NaN with the reason.

Strata are the report's panels: per dataset, all its items (``DATASET/all``) and, where it has several
domains, each domain (``DATASET/speech``); a panel whose items come at several sample rates is also split
by rate (``DATASET/all/16000Hz``), since what a codec does to 8 kHz and to 48 kHz material is best
compared apart.

Embeddings are cached on disk beside the reconstructions (``CACHE/embeddings/NAMESPACE/ab/KEY.npy``). The
namespace hashes the embedder, its weights' and configs' hashes, the code of ``bench.metrics.fad``, of this
module and of ``bench.audio``, the transformers, torch and soxr versions and the device type, so an
embedding of other weights or code is never served; the key is the audio's content hash (a reference's
input hash, a reconstruction's FLAC digest and gain). A reference is embedded once for all codecs, and a
resumed run embeds nothing it embedded before.

Resume: the set values are recomputed at the end of every run from the cached embeddings. Each row keeps
a fingerprint of the metric (its code and weights) and of its set's content (item ids with their
reference and reconstruction content ids, the items left out, the seed); a row whose fingerprint is
unchanged is kept as it is. A (codec, operating point, metric)'s rows are replaced as a whole, so a
stratum that no longer exists leaves no row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.datasets.base import Item
    from bench.metrics.base import MetricSpec, MetricValue
    from bench.metrics.fad import ItemEmbedding, LoadedEmbedder
    from bench.pipeline.run import _Plan
    from bench.store import Store
    from bench.types import RunConfig


class Unavailable(RuntimeError):
    """An item's audio that the set-level pass cannot read; the message is the reason it is left out."""


@dataclass(frozen=True)
class Member:
    """One coded pair of a set: the item, its reconstruction's cache key, and both signals' content ids."""

    item: Item
    cache_key: str
    input_hash: str
    deg_id: str
    rate_hz: int
    measured_kbps: float | None

    @property
    def ref_id(self) -> str:
        """The reference's content id (its input hash: the prepared samples and rate)."""
        return f"ref:{self.input_hash}"


@dataclass
class Point:
    """One codec operating point: its coded members by item id, and the coded items left out (and why)."""

    codec: str
    op: str
    nominal_kbps: float | None
    members: dict[str, Member] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stratum:
    """A set of items reported together: its name, dataset, domain (or ``all``), rate (None: any) and item ids."""

    name: str
    dataset: str
    domain: str
    rate_hz: int | None
    item_ids: frozenset[str]


def strata(items: list[Item], rates_hz: dict[str, int]) -> list[Stratum]:
    """The report's panels (dataset x all/each domain), each split by rate too where it mixes rates."""
    out: list[Stratum] = []
    for dataset in sorted({it.dataset or "" for it in items}):
        in_ds = [it for it in items if (it.dataset or "") == dataset]
        domains = sorted({it.domain or "unknown" for it in in_ds})
        panels = [("all", in_ds)] + ([(d, [it for it in in_ds if (it.domain or "unknown") == d]) for d in domains]
                                     if len(domains) > 1 else [])
        for domain, members in panels:
            name = f"{dataset or 'items'}/{domain}"
            ids = frozenset(it.id for it in members)
            out.append(Stratum(name, dataset, domain, None, ids))
            rates = sorted({rates_hz[i] for i in ids if i in rates_hz})
            if len(rates) > 1:
                out += [Stratum(f"{name}/{r}Hz", dataset, domain, r, frozenset(i for i in ids if rates_hz.get(i) == r))
                        for r in rates]
    return out


def _content_id(meta: dict[str, Any]) -> str:
    """A cached reconstruction's content id: its FLAC's digest and the gain that undoes its headroom scaling."""
    return f"deg:{meta.get('flac_sha256')}:{meta.get('gain', 1.0)}"


def coded_points(store: Store, run_id: str, plan: _Plan, cache: ReconCache) -> list[Point]:
    """Each planned codec point with its items that coded ok and whose reconstruction the cache describes."""
    coded = {(r["item_id"], r["codec"], r["op"]): r for r in store.coded_rows(run_id)}
    points: list[Point] = []
    for sel in plan.selections:
        if any(p.codec == sel.key and p.op == sel.op.name for p in points):
            continue
        point = Point(sel.key, sel.op.name, sel.op.nominal_kbps)
        for item in plan.items:
            row = coded.get((item.id, sel.key, sel.op.name))
            if row is None or row["status"] != "ok":
                continue
            meta = cache.meta(row["cache_key"]) if row.get("cache_key") else None
            if meta is None or not meta.get("input_hash"):
                point.excluded[item.id] = f"reconstruction not in the cache {cache.root} (or its metadata is damaged)"
                continue
            kbps = row.get("measured_kbps")
            point.members[item.id] = Member(item, row["cache_key"], str(meta["input_hash"]), _content_id(meta),
                                            int(meta.get("sample_rate_hz") or 0),
                                            float(kbps) if kbps is not None else None)
        points.append(point)
    return points


class EmbeddingStore:
    """Embeddings on disk, one ``.npy`` per (namespace, content id); a damaged file is a miss."""

    def __init__(self, root: Path, namespace: str, *, refresh: bool = False) -> None:
        self.folder = Path(root) / "embeddings" / namespace
        self.refresh = refresh
        self._written: set[str] = set()

    def path(self, content_id: str) -> Path:
        """Where the embedding of ``content_id`` lives."""
        import hashlib

        key = hashlib.sha256(content_id.encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, content_id: str) -> np.ndarray | None:
        """The stored ``[frames, dim]`` float32 array, or None (absent, refreshed, unreadable, not finite)."""
        path = self.path(content_id)
        if (self.refresh and content_id not in self._written) or not path.is_file():
            return None
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return x if x.ndim == 2 and x.shape[0] > 0 and np.isfinite(x).all() else None

    def put(self, content_id: str, frames: np.ndarray) -> None:
        """Store an embedding atomically (a temporary file renamed into place)."""
        path = self.path(content_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        try:
            np.save(tmp, np.ascontiguousarray(frames, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
            self._written.add(content_id)
        finally:
            tmp.unlink(missing_ok=True)


def set_function(spec: MetricSpec) -> Any:
    """A set-level spec's function: it has an ``embedder`` and takes (reference, reconstruction) embeddings."""
    if not hasattr(spec.fn, "embedder"):
        raise TypeError(f"set-level metric {spec.name!r} has no embedder (see bench.metrics.fad.FrechetSetMetric)")
    return spec.fn


def embedding_namespace(spec: MetricSpec, model: dict[str, Any], device: str) -> str:
    """The hash that keys a metric's embeddings: embedder, weights and configs, code, library versions, device."""
    from bench.fingerprint import digest, package_versions, source_fingerprint

    embedder = set_function(spec).embedder
    return digest({"embedder": embedder.name, "version": embedder.version,
                   "model": {k: v for k, v in model.items() if k != "folder"},
                   "code": source_fingerprint(["bench.metrics.fad", "bench.pipeline.set_level", "bench.audio"]),
                   "packages": package_versions(["transformers", "torch", "soxr"]),
                   "device": device.split(":")[0]}, length=24)


class Embeddings:
    """One metric's embeddings for a run: the disk store, the model (loaded on the first miss), the references."""

    def __init__(self, spec: MetricSpec, model: dict[str, Any], cfg: RunConfig, cache: ReconCache) -> None:
        self.spec, self.cfg, self.cache = spec, cfg, cache
        self.store = EmbeddingStore(cache.root, embedding_namespace(spec, model, cfg.device), refresh=cfg.refresh)
        self.loaded: LoadedEmbedder | None = None
        self.refs: dict[str, ItemEmbedding] = {}  # the references' embeddings, shared by every codec point
        self.embedded = 0  # clips embedded (not read from the disk store) in this run
        self.embed_s = 0.0
        self.audio_s = 0.0

    def model(self) -> LoadedEmbedder:
        """The embedding model, loaded once (MissingWeights when its weights are not on disk)."""
        from bench.metrics.fad import load_embedder

        if self.loaded is None:
            self.loaded = load_embedder(set_function(self.spec).embedder, self.cfg.device)
        return self.loaded

    def of(self, content_id: str, audio: Callable[[], tuple[np.ndarray, int]]) -> ItemEmbedding:
        """The embedding of one signal: from the disk store, else ``audio()`` embedded and stored."""
        import time

        from bench.audio import resample
        from bench.metrics.fad import ItemEmbedding

        frames = self.store.get(content_id)
        if frames is None:
            x, rate = audio()
            model = self.model()
            mono = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1]).mean(axis=0)
            start = time.perf_counter()
            frames = model.embed(resample(mono, rate, model.sample_rate_hz))
            self.embed_s += time.perf_counter() - start
            self.audio_s += mono.shape[-1] / rate
            self.embedded += 1
            self.store.put(content_id, frames)
        return ItemEmbedding.from_frames(frames)

    def reference(self, m: Member) -> ItemEmbedding:
        """The embedding of a member's prepared reference (kept in memory for the other codec points)."""
        if m.ref_id not in self.refs:
            self.refs[m.ref_id] = self.of(m.ref_id, lambda: self._reference_audio(m))
        return self.refs[m.ref_id]

    def reconstruction(self, m: Member) -> ItemEmbedding:
        """The embedding of a member's cached reconstruction."""
        return self.of(m.deg_id, lambda: self._reconstruction_audio(m))

    def _reconstruction_audio(self, m: Member) -> tuple[np.ndarray, int]:
        hit = self.cache.get(m.cache_key)
        if hit is None:
            raise Unavailable(f"reconstruction {m.cache_key[:12]} is no longer readable in the cache {self.cache.root}")
        return hit[0], hit[1]

    def _reference_audio(self, m: Member) -> tuple[np.ndarray, int]:
        """The cached prepared reference, else the item prepared again (it must hash as the one coded)."""
        from bench.audio import array_hash
        from bench.pipeline.code import ItemError, prepare_reference

        hit = self.cache.get_reference(m.input_hash)
        if hit is not None:
            return hit
        try:
            x, rate, _ = prepare_reference(m.item, self.cfg)
        except ItemError as exc:
            raise Unavailable(f"reference not cached and not readable: {exc}") from exc
        if array_hash(x, rate) != m.input_hash:
            raise Unavailable(f"reference not cached, and {m.item.path} no longer holds the audio that was coded")
        return x, rate


def _set_fingerprint(metric_fp: str, stratum: str, members: list[Member], excluded: dict[str, str], seed: int) -> str:
    """What decides a set row: the metric's identity, this module's code, the set's content, the seed."""
    from bench.fingerprint import digest, source_fingerprint

    return digest({"metric": metric_fp, "code": source_fingerprint(["bench.pipeline.set_level"]), "stratum": stratum,
                   "members": sorted((m.item.id, m.ref_id, m.deg_id) for m in members),
                   "excluded": sorted(excluded), "seed": seed}, length=24)


def _embed_set(emb: Embeddings, members: list[Member], excluded: dict[str, str]
               ) -> tuple[list[Member], list[ItemEmbedding], list[ItemEmbedding]]:
    """The members whose two signals could be embedded, with their embeddings; the others go to ``excluded``."""
    used, refs, degs = [], [], []
    for m in members:
        try:
            r, d = emb.reference(m), emb.reconstruction(m)
        except Unavailable as exc:
            excluded[m.item.id] = str(exc)
            continue
        except ValueError as exc:  # the model returned no frames or non-finite ones for this clip
            excluded[m.item.id] = f"embedding failed: {exc}"
            continue
        used.append(m)
        refs.append(r)
        degs.append(d)
    return used, refs, degs


def _row_extra(spec: MetricSpec, model: dict[str, Any], point: Point, stratum: Stratum, used: list[Member],
               excluded: dict[str, str]) -> dict[str, Any]:
    """What a set row records beside its value: the embedding model, the stratum, rates, the item set."""
    from bench.fingerprint import digest

    kbps = [m.measured_kbps for m in used if m.measured_kbps is not None]
    embedder = set_function(spec).embedder
    return {"display_name": spec.display_name or spec.name, "embedder": embedder.name,
            "embedder_display_name": embedder.display_name, "embedding_model": model.get("model"),
            "weights_sha256": model.get("weights_sha256"), "level": embedder.level,
            "dataset": stratum.dataset, "domain": stratum.domain, "sample_rate_hz": stratum.rate_hz,
            "nominal_kbps": point.nominal_kbps, "measured_kbps": float(np.mean(kbps)) if kbps else None,
            "item_set_sha256": digest(sorted(m.item.id for m in used), length=24), "excluded": dict(sorted(excluded.items()))}


def _value(spec: MetricSpec, model: dict[str, Any], emb: Embeddings, members: list[Member],
           excluded: dict[str, str], seed: int) -> tuple[MetricValue, list[Member]]:
    """The metric's value over the members (NaN with the reason when weights are missing or it fails)."""
    from bench.metrics._models import MissingWeights
    from bench.metrics.base import failed

    if model.get("error"):
        return failed(f"{spec.name}: {model['error']}"), members
    try:
        used, refs, degs = _embed_set(emb, members, excluded)
        value = set_function(spec)(refs, degs, seed=seed)
    except MissingWeights as exc:
        return failed(f"{spec.name}: {exc}"), members
    except Exception as exc:  # noqa: BLE001 - a model that crashes fails this row with the reason, the run goes on
        return failed(f"{spec.name}: {type(exc).__name__}: {exc}"), members
    if value.error is not None and excluded:
        first = next(iter(sorted(excluded.items())))
        value.error += f"; {len(excluded)} item(s) left out (first: {first[0]}: {first[1]})"
    return value, used


def _compute_row(spec: MetricSpec, model: dict[str, Any], emb: Embeddings, point: Point, stratum: Stratum,
                 members: list[Member], excluded: dict[str, str], fingerprint: str, seed: int) -> dict[str, Any]:
    """One set row: value, CI, counts, status and extras."""
    excluded = dict(excluded)
    value, used = _value(spec, model, emb, members, excluded, seed)
    extra = {**_row_extra(spec, model, point, stratum, used, excluded),
             **{k: v for k, v in value.extra.items() if k not in ("ci_low", "ci_high")}}
    ok = value.error is None and math.isfinite(value.value)
    return {"codec": point.codec, "op": point.op, "metric": spec.name, "stratum": stratum.name,
            "n_items": len(used), "value": value.value if ok else math.nan,
            "ci_low": value.extra.get("ci_low", math.nan) if ok else math.nan,
            "ci_high": value.extra.get("ci_high", math.nan) if ok else math.nan,
            "status": "ok" if ok else "failed", "error": None if ok else (value.error or "non-finite value"),
            "extra": extra, "fingerprint": fingerprint}


def _metric_rows(spec: MetricSpec, cfg: RunConfig, items: list[Item], points: list[Point], all_strata: list[Stratum],
                 stored: dict[tuple[str, str, str, str], dict[str, Any]], store: Store, run_id: str,
                 cache: ReconCache) -> Embeddings:
    """Compute (or keep) every row of one set-level metric and write them, one codec point at a time."""
    from tqdm import tqdm

    from bench.metrics.base import describe_model, metric_fingerprint

    metric_fp, model = metric_fingerprint(spec), describe_model(spec) or {}
    emb = Embeddings(spec, model, cfg, cache)
    for point in tqdm(points, desc=spec.name, unit="point", disable=not cfg.progress, dynamic_ncols=True):
        rows = []
        for st in all_strata:
            applicable = {it.id for it in items if it.id in st.item_ids and spec.applies_to(it.domain)[0]}
            if not applicable:
                continue  # the metric applies to none of the stratum's items: no row (as per-item skips)
            members = [m for iid, m in sorted(point.members.items()) if iid in applicable]
            excluded = {iid: why for iid, why in point.excluded.items() if iid in applicable}
            key = _set_fingerprint(metric_fp, st.name, members, excluded, cfg.seed)
            old = stored.get((point.codec, point.op, spec.name, st.name))
            if old is not None and old.get("fingerprint") == key and not cfg.refresh:
                rows.append(old)
            else:
                rows.append(_compute_row(spec, model, emb, point, st, members, excluded, key, cfg.seed))
        store.put_set_results(run_id, rows, scope=[(point.codec, point.op, spec.name)])
    return emb


def run_set_level(cfg: RunConfig, plan: _Plan, store: Store, run_id: str, cache: ReconCache, *,
                  say: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """The set-level pass of a run (a no-op without set-level metrics); returns per metric what it embedded.

    ``{metric: {"clips_embedded", "embed_s", "audio_s"}}``: clips embedded in this call (not read back
    from the disk store), the seconds that took, and the seconds of audio they held.
    """
    specs = [m for m in plan.metrics if m.set_level]
    if not specs:
        return {}
    points = coded_points(store, run_id, plan, cache)
    rates = {iid: m.rate_hz for p in points for iid, m in p.members.items() if m.rate_hz}
    all_strata = strata(plan.items, rates)
    stored = {(r["codec"], r["op"], r["metric"], r["stratum"]): r for r in store.set_results(run_id)}
    done: dict[str, dict[str, float]] = {}
    for spec in specs:
        emb = _metric_rows(spec, cfg, plan.items, points, all_strata, stored, store, run_id, cache)
        done[spec.name] = {"clips_embedded": emb.embedded, "embed_s": emb.embed_s, "audio_s": emb.audio_s}
        if say is not None and emb.embedded:
            say(f"note: {spec.name}: embedded {emb.embedded} clip(s) ({emb.audio_s:.1f} s of audio) "
                f"in {emb.embed_s:.1f} s")
    return done
