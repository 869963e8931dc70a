"""Fréchet Audio Distance (FAD): how far a codec's reconstructions are, as a set, from the references.

Definition (Kilgour, Zuluaga, Roblek, Sharifi, "Fréchet Audio Distance: A Reference-free Metric for
Evaluating Music Enhancement Algorithms", Interspeech 2019): embed every clip of the reference set R and
of the reconstruction set D with a fixed audio model, fit a Gaussian (mean, covariance) to each set's
embeddings, and take the Fréchet (2-Wasserstein) distance between the two Gaussians

    FAD = ||mu_r - mu_d||^2 + Tr(S_r + S_d - 2 (S_r S_d)^{1/2})          [embedding units^2, lower is better]

Computation (float64): Tr((S_r S_d)^{1/2}) = Tr((A S_d A)^{1/2}) with A = S_r^{1/2}, both from
eigendecompositions of symmetric positive semi-definite matrices (eigenvalues below zero from rounding are
clipped to 0), instead of the matrix square root of the non-symmetric product (scipy.linalg.sqrtm, complex
in floating point); where S_d is positive definite the similar matrix L^T S_r L (S_d = L L^T, Cholesky)
replaces A S_d A, with the same eigenvalues at less cost. When both sets hold fewer embedding frames than dimensions the covariances are
rank-deficient: the distance is still defined, and the same trace is the nuclear norm of Y_r Y_d^T, Y the
weighted centred frames (S = Y^T Y), computed in the frames' space (exact, and cheaper). Covariances are
unbiased (divided by N - 1). A value below zero from rounding is reported as 0.

Embeddings: pooled over all clips of the set, one Gaussian per set (as VGGish FAD pools its 0.96 s
frames). :data:`EMBEDDERS` holds the embedding models; another is one loader function and one
:func:`register_embedder` call. Built in (weights from a local folder or the Hugging Face cache,
:mod:`bench.metrics._models`; nothing is downloaded here):

* ``fad_encodec``: frame-level continuous latents of the EnCodec encoder (before quantisation; 75
  frames/s x 128 dims for ``facebook/encodec_24khz``, at 24 kHz), from ``transformers.EncodecModel``;
  ``$BENCH_FAD_ENCODEC_MODEL``. The embedding fadtk offers for EnCodec (Gui, Gamper, Braun, Emmanouilidis,
  "Adapting Frechet Audio Distance for Generative Music Evaluation", ICASSP 2024).
* ``fad_clap``: clip-level LAION-CLAP audio embeddings (HTSAT audio tower, projected and L2-normalised as
  ``ClapModel.get_audio_features`` returns them; 512 dims for ``laion/clap-htsat-unfused``, at 48 kHz),
  one per window of at most the feature extractor's 10 s: a clip is cut into ceil(T / 10 s) equal windows,
  so nothing is randomly cropped; ``$BENCH_FAD_CLAP_MODEL``.

Set-level: one value per set of items (the references vs the reconstructions of one codec operating
point, one stratum), never per item; :mod:`bench.pipeline.set_level` computes it after the per-item work.
The 95 % confidence interval is a percentile bootstrap over items (:data:`N_BOOT` resamples, fixed
seed), re-centred on the estimate: items are resampled with all their frames, paired (item k is drawn
for both sets together), and the resampled values are shifted by (estimate - their median) before their
2.5 and 97.5 percentiles are taken; a bound below 0 is 0. The shift is needed because FAD is biased
upwards on small sets (the covariances' sampling noise adds to the distance) and a resample with
replacement holds only about 63 % distinct items, so the raw percentiles sit above the estimate (on
synthetic sets of 10-30 items they excluded it almost always); the shift removes that extra bias and
keeps the resamples' spread (the raw percentiles stay in ``extra``). Fewer than :data:`MIN_ITEMS` items
is NaN with the reason. For the same reason compare FAD values over sets of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.metrics.base import MetricSpec, MetricValue, failed, register_metric

MIN_ITEMS = 2  # fewer items than this in a set: NaN with the reason (no spread to fit, no bootstrap)
N_BOOT = 200  # bootstrap resamples of the items for the CI
CI_LEVEL = 0.95
ENCODEC_CHUNK_S = 30.0  # the EnCodec encoder runs on at most this many seconds at once (memory)
CLAP_BATCH = 8  # CLAP windows per forward pass


# --- the distance -------------------------------------------------------------------------------

def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues below zero clipped to 0)."""
    vals, vecs = np.linalg.eigh((s + s.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def trace_sqrt_product(s_r: np.ndarray, s_d: np.ndarray) -> float:
    """Tr((S_r S_d)^{1/2}) of two symmetric PSD matrices, from the eigenvalues of a symmetric similar matrix.

    That matrix is L^T S_r L with S_d = L L^T (Cholesky) when S_d is positive definite, else A S_d A with
    A = S_r^{1/2} (eigendecomposition): both have the eigenvalues of S_r S_d, and the first is cheaper.
    """
    s_r, s_d = np.asarray(s_r, dtype=np.float64), np.asarray(s_d, dtype=np.float64)
    try:
        low = np.linalg.cholesky((s_d + s_d.T) / 2.0)
        m = low.T @ s_r @ low
    except np.linalg.LinAlgError:  # singular (rank-deficient) S_d
        a = _sqrt_psd(s_r)
        m = a @ s_d @ a
    vals = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum())


def frechet_distance(mu_r: np.ndarray, cov_r: np.ndarray, mu_d: np.ndarray, cov_d: np.ndarray) -> float:
    """||mu_r - mu_d||^2 + Tr(S_r + S_d - 2 (S_r S_d)^{1/2}) of two Gaussians, float64, never below 0."""
    mu_r, mu_d = np.atleast_1d(np.asarray(mu_r, np.float64)), np.atleast_1d(np.asarray(mu_d, np.float64))
    cov_r, cov_d = np.atleast_2d(np.asarray(cov_r, np.float64)), np.atleast_2d(np.asarray(cov_d, np.float64))
    if mu_r.shape != mu_d.shape or cov_r.shape != cov_d.shape or cov_r.shape != (mu_r.size, mu_r.size):
        raise ValueError(f"shapes do not match: means {mu_r.shape}, {mu_d.shape}; covariances "
                         f"{cov_r.shape}, {cov_d.shape}")
    diff = mu_r - mu_d
    value = float(diff @ diff) + float(np.trace(cov_r) + np.trace(cov_d)) - 2.0 * trace_sqrt_product(cov_r, cov_d)
    return max(value, 0.0)


# --- a set of embeddings, pooled with item weights ------------------------------------------------

@dataclass(frozen=True)
class ItemEmbedding:
    """One clip's embedding frames, kept in the cheaper of two exact forms for pooling.

    ``frames`` ([n, d] float64) when there are fewer frames than dimensions, else the frames' ``mean``
    and ``scatter`` (sum of (x - mean)(x - mean)^T, [d, d]): a set's mean and covariance follow from
    either, for any item weights.
    """

    n_frames: int
    mean: np.ndarray
    frames: np.ndarray | None = None
    scatter: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Embedding dimensions."""
        return int(self.mean.shape[0])

    @classmethod
    def from_frames(cls, frames: np.ndarray) -> "ItemEmbedding":
        """From ``[frames, dim]`` embeddings (at least one frame, finite); ValueError otherwise."""
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"embeddings must be [frames >= 1, dim >= 1], got shape {tuple(x.shape)}")
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN/Inf")
        mean = x.mean(axis=0)
        if x.shape[0] < x.shape[1]:
            return cls(int(x.shape[0]), mean, frames=x)
        xc = x - mean
        return cls(int(x.shape[0]), mean, scatter=xc.T @ xc)


class _Stacked:
    """A set's item embeddings as arrays, for pooling under many bootstrap weights."""

    def __init__(self, items: Sequence[ItemEmbedding]) -> None:
        self.n = np.array([it.n_frames for it in items], dtype=np.float64)
        self.means = np.stack([it.mean for it in items])
        self.dim = int(self.means.shape[1])
        scatters = {k: it.scatter for k, it in enumerate(items) if it.scatter is not None}
        frames = {k: it.frames for k, it in enumerate(items) if it.frames is not None}
        self.scatter_idx = np.array(list(scatters), dtype=np.int64)
        self.scatters = np.stack(list(scatters.values())) if scatters else None
        self.owner = np.concatenate([np.full(f.shape[0], k) for k, f in frames.items()]) if frames else None
        self.frames = np.concatenate(list(frames.values())) if frames else None
        # frames centred on their item's mean, of the items with more than one (a single frame adds no spread)
        spread = {k: f - f.mean(axis=0) for k, f in frames.items() if f.shape[0] > 1}
        self.spread_owner = np.concatenate([np.full(f.shape[0], k) for k, f in spread.items()]) if spread else None
        self.spread = np.concatenate(list(spread.values())) if spread else None
        self.all_frames = not scatters  # every item kept its frames: the frame-space form applies
        self.n_frames = int(self.n.sum())

    def mean(self, w: np.ndarray) -> tuple[np.ndarray, float]:
        """The pooled mean and frame count under item weights ``w``."""
        wn = w * self.n
        total = float(wn.sum())
        return (wn @ self.means) / total, total

    def covariance(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled (mean, unbiased covariance) under item weights ``w`` (item k counted w[k] times)."""
        mu, total = self.mean(w)
        drawn = w > 0  # items a resample left out add nothing: skip their rows
        d = self.means[drawn] - mu
        s = (d.T * (w * self.n)[drawn]) @ d
        if self.scatters is not None:
            s += np.tensordot(w[self.scatter_idx], self.scatters, axes=1)
        if self.spread is not None and self.spread_owner is not None:
            rows = drawn[self.spread_owner]
            fc = self.spread[rows]
            s += (fc.T * w[self.spread_owner][rows]) @ fc
        return mu, s / max(total - 1.0, 1.0)

    def centred(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, Y) with Y^T Y the pooled covariance: frames centred and scaled by sqrt(weight / (N - 1))."""
        assert self.frames is not None and self.owner is not None
        mu, total = self.mean(w)
        scale = np.sqrt(w[self.owner] / max(total - 1.0, 1.0))
        return mu, (self.frames - mu) * scale[:, None]


def _distance(ref: _Stacked, deg: _Stacked, w: np.ndarray) -> float:
    """FAD of the two pooled sets under item weights ``w``: in the frames' space when that is smaller."""
    if ref.all_frames and deg.all_frames and max(ref.n_frames, deg.n_frames) <= ref.dim:
        mu_r, y_r = ref.centred(w)
        mu_d, y_d = deg.centred(w)
        diff = mu_r - mu_d
        nuclear = float(np.linalg.svd(y_r @ y_d.T, compute_uv=False).sum())
        return max(float(diff @ diff) + float((y_r * y_r).sum() + (y_d * y_d).sum()) - 2.0 * nuclear, 0.0)
    mu_r, cov_r = ref.covariance(w)
    mu_d, cov_d = deg.covariance(w)
    return frechet_distance(mu_r, cov_r, mu_d, cov_d)


def _as_items(embeddings: Sequence[Any]) -> list[ItemEmbedding]:
    """Item embeddings from ItemEmbedding objects or ``[frames, dim]`` arrays."""
    return [e if isinstance(e, ItemEmbedding) else ItemEmbedding.from_frames(e) for e in embeddings]


def _bootstrap(ref: _Stacked, deg: _Stacked, n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """FAD of ``n_boot`` paired resamples of the items (each drawn with all its frames, for both sets)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n_items, n_items), minlength=n_items).astype(np.float64)
        out[b] = _distance(ref, deg, w)
    return out


def _interval(value: float, boots: np.ndarray, ci_level: float) -> dict[str, float]:
    """The re-centred percentile interval of the resampled values (see the module doc), and the raw one."""
    if not boots.size:
        return {"ci_low": math.nan, "ci_high": math.nan}
    alpha = (1.0 - ci_level) / 2.0
    raw_lo, raw_hi, median = (float(np.quantile(boots, q)) for q in (alpha, 1.0 - alpha, 0.5))
    shift = value - median
    return {"ci_low": max(raw_lo + shift, 0.0), "ci_high": raw_hi + shift, "ci_raw_low": raw_lo,
            "ci_raw_high": raw_hi, "bootstrap_median": median}


def fad_of_sets(ref: Sequence[Any], deg: Sequence[Any], *, n_boot: int = N_BOOT, seed: int = 0,
                ci_level: float = CI_LEVEL) -> MetricValue:
    """FAD between two sets of per-item embeddings, item k of ``ref`` and of ``deg`` being the same item.

    Each entry is an :class:`ItemEmbedding` or a ``[frames, dim]`` array. Returns the value with
    ``extra``: ``ci_low``/``ci_high`` (bootstrap over items, re-centred percentiles), frame counts, dimensions,
    ``rank_deficient`` (fewer frames than dimensions + 1 in a set) and a ``note`` saying so.
    Fewer than :data:`MIN_ITEMS` items, unequal set sizes or mismatched dimensions: NaN with the reason.
    """
    if len(ref) != len(deg):
        return failed(f"FAD needs the same items in both sets, got {len(ref)} references and {len(deg)} reconstructions")
    if len(ref) < MIN_ITEMS:
        return failed(f"set too small for FAD: {len(ref)} item(s), need at least {MIN_ITEMS}", n_items=len(ref))
    try:
        r_items, d_items = _as_items(ref), _as_items(deg)
    except ValueError as exc:
        return failed(f"bad embeddings: {exc}")
    dims = {it.dim for it in r_items + d_items}
    if len(dims) != 1:
        return failed(f"embeddings of different dimensions in one comparison: {sorted(dims)}")
    r, d = _Stacked(r_items), _Stacked(d_items)
    n = len(r_items)
    value = _distance(r, d, np.ones(n))
    boots = _bootstrap(r, d, n, n_boot, seed) if n_boot > 0 else np.array([])
    dim = dims.pop()
    deficient = min(r.n_frames, d.n_frames) <= dim
    extra: dict[str, Any] = {**_interval(value, boots, ci_level), "ci_level": ci_level, "n_boot": n_boot,
                             "seed": seed, "n_items": n, "n_frames_ref": r.n_frames, "n_frames_deg": d.n_frames,
                             "dim": dim, "rank_deficient": deficient}
    if deficient:
        extra["note"] = (f"rank-deficient covariance: {min(r.n_frames, d.n_frames)} frames for {dim} dimensions "
                         "(defined, but a small set's FAD is biased upwards; compare sets of equal size)")
    return MetricValue(value, None, extra)


# --- embedding models ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedEmbedder:
    """An embedding model ready to run: its rate, dimensions, and ``embed(mono [T] at that rate) -> [frames, dim]``."""

    sample_rate_hz: int
    dim: int
    embed: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Embedder:
    """An embedding model of FAD: where its weights are and how to load them.

    ``load(folder, device)`` builds a :class:`LoadedEmbedder` from a ``save_pretrained`` folder;
    ``sample_rate_hz`` is the default weights' rate (the loaded config decides); ``level`` is
    ``"frame"`` (many embeddings per clip) or ``"clip"`` (one per window of a clip).
    """

    name: str
    display_name: str
    sample_rate_hz: int
    env_var: str
    default_hub_id: str
    level: str
    load: Callable[[Path, str], LoadedEmbedder]
    version: str = "1"


#: embedding models by name: each registers one metric ``fad_<name>``
EMBEDDERS: dict[str, Embedder] = {}


def register_embedder(embedder: Embedder) -> Embedder:
    """Add an embedding model under its name (a second, different one under a taken name is an error)."""
    if embedder.name in EMBEDDERS and EMBEDDERS[embedder.name] is not embedder:
        raise ValueError(f"FAD embedder {embedder.name!r} is already registered")
    EMBEDDERS[embedder.name] = embedder
    return embedder


def _file_sha256(path: Path) -> str | None:
    """SHA-256 of a small file (configs), None when it does not exist."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def embedder_model_info(embedder: Embedder) -> dict[str, Any]:
    """The weights an embedder uses (source, folder, weights hash, config hashes) or why there are none."""
    from bench.metrics._models import model_info

    info = model_info(embedder.env_var, embedder.default_hub_id, embedder=embedder.name, level=embedder.level,
                      embedder_version=embedder.version, display_name=embedder.display_name)
    if "folder" in info:
        folder = Path(info["folder"])
        info["config_sha256"] = {name: _file_sha256(folder / name)
                                 for name in ("config.json", "preprocessor_config.json")}
    return info


def load_embedder(embedder: Embedder, device: str = "cpu") -> LoadedEmbedder:
    """The embedder's model from its weights folder, once per process and device; MissingWeights when absent."""
    from bench.metrics._models import load_cached, resolve_model

    folder = resolve_model(embedder.env_var, embedder.default_hub_id)
    return load_cached(f"fad:{embedder.name}", folder, device, embedder.load)


def windows(n_samples: int, max_samples: int) -> list[tuple[int, int]]:
    """``ceil(n / max)`` equal consecutive windows (start, stop) covering ``n_samples``; one for a short clip."""
    count = max(1, math.ceil(n_samples / max(1, max_samples)))
    edges = np.linspace(0, n_samples, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _from_pretrained(cls: Any, folder: Path) -> Any:
    """``cls.from_pretrained(folder)``, offline and safetensors only, without transformers' progress output."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # an audio tower read from a full CLAP folder: its text weights are unused
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_encodec(folder: Path, device: str) -> LoadedEmbedder:
    """EnCodec's encoder: continuous latent frames [frames, hidden_size] of a mono clip (copied to every channel)."""
    import torch
    from transformers import EncodecModel

    model = _from_pretrained(EncodecModel, folder).to(device).eval()
    rate, channels = int(model.config.sampling_rate), int(model.config.audio_channels)
    chunk = int(ENCODEC_CHUNK_S * rate)

    def embed(wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(device)
        out = []
        with torch.inference_mode():
            for a, b in windows(x.shape[-1], chunk):
                piece = x[a:b].reshape(1, 1, -1).expand(1, channels, -1)
                out.append(model.encoder(piece)[0].T.float().cpu().numpy())
        return np.concatenate(out)

    return LoadedEmbedder(rate, int(model.config.hidden_size), embed)


def _load_clap(folder: Path, device: str) -> LoadedEmbedder:
    """CLAP's audio tower: one projected, L2-normalised embedding per window of at most the extractor's length."""
    import torch
    from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

    from bench.metrics._models import MissingWeights

    if not (folder / "preprocessor_config.json").is_file():
        raise MissingWeights(f"{folder} has no preprocessor_config.json (the CLAP feature extractor's settings); "
                             "run `bench weights fetch laion/clap-htsat-unfused` or save the extractor there")
    extractor = ClapFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    model = _from_pretrained(ClapAudioModelWithProjection, folder).to(device).eval()
    truncation = "fusion" if model.config.enable_fusion else "rand_trunc"  # no window is longer: no random crop
    rate, window = int(extractor.sampling_rate), int(extractor.nb_max_samples)

    def embed(wav: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(wav, dtype=np.float32)
        pieces = [x[a:b] for a, b in windows(x.shape[-1], window)]
        out = []
        for k in range(0, len(pieces), CLAP_BATCH):
            feats = extractor(pieces[k:k + CLAP_BATCH], sampling_rate=rate, truncation=truncation,
                              return_tensors="pt")
            is_longer = torch.zeros_like(feats["is_longer"], dtype=torch.bool)  # none is: the extractor may flag one at random
            with torch.inference_mode():
                emb = model(input_features=feats["input_features"].to(device), is_longer=is_longer.to(device)).audio_embeds
            out.append(torch.nn.functional.normalize(emb, dim=-1).float().cpu().numpy())
        return np.concatenate(out)

    return LoadedEmbedder(rate, int(model.config.projection_dim), embed)


CLAP = register_embedder(Embedder(
    name="clap", display_name="LAION-CLAP HTSAT audio embeddings", sample_rate_hz=48_000,
    env_var="BENCH_FAD_CLAP_MODEL", default_hub_id="laion/clap-htsat-unfused", level="clip", load=_load_clap))
ENCODEC = register_embedder(Embedder(
    name="encodec", display_name="EnCodec 24 kHz encoder latents", sample_rate_hz=24_000,
    env_var="BENCH_FAD_ENCODEC_MODEL", default_hub_id="facebook/encodec_24khz", level="frame", load=_load_encodec))


# --- the metric specs ---------------------------------------------------------------------------

class FrechetSetMetric:
    """The function of a ``fad_<embedder>`` spec: FAD of two sets of embeddings (see :func:`fad_of_sets`).

    A set-level metric: ``bench.pipeline.set_level`` embeds the sets with :attr:`embedder` and calls
    it once per codec point and stratum; the per-item path never does.
    """

    def __init__(self, embedder_name: str) -> None:
        self.embedder_name = embedder_name

    @property
    def embedder(self) -> Embedder:
        """The embedding model this FAD uses."""
        return EMBEDDERS[self.embedder_name]

    def __call__(self, ref: Sequence[Any], deg: Sequence[Any], *, n_boot: int = N_BOOT, seed: int = 0,
                 **options: Any) -> MetricValue:
        """FAD of the references' and the reconstructions' embeddings (item k the same item in both)."""
        return fad_of_sets(ref, deg, n_boot=n_boot, seed=seed)


def _model_info_of(embedder: Embedder) -> Callable[[], dict[str, Any]]:
    """The spec's ``model_info``: the embedder's weights, read at call time (the env var may change)."""
    return lambda: embedder_model_info(embedder)


def _register(embedder: Embedder) -> MetricSpec:
    """Register ``fad_<embedder>``: a set-level, lower-is-better, model-backed metric."""
    return register_metric(MetricSpec(
        name=f"fad_{embedder.name}", fn=FrechetSetMetric(embedder.name), higher_is_better=False, unit="",
        sample_rate_hz=embedder.sample_rate_hz, valid_range=(0.0, math.inf), version="1",
        source=("Kilgour et al., Frechet Audio Distance, Interspeech 2019; embeddings: "
                f"{embedder.display_name} ({embedder.default_hub_id}); bench.metrics.fad"),
        description=f"Frechet distance between Gaussians of reference and reconstruction {embedder.display_name}",
        requires=("transformers",), batched=False, default=False, model_info=_model_info_of(embedder),
        display_name=f"FAD ({embedder.display_name})", set_level=True))


FAD_CLAP = _register(CLAP)
FAD_ENCODEC = _register(ENCODEC)
