"""A synthetic run directory with a known ground truth, for tests, demos and the README figure.

Builds ``RUN_DIR/results.sqlite`` through :class:`bench.store.Store` exactly as the runner does,
with speakers and tracks as clusters, a speech-only metric (skipped elsewhere), a few failures
with reasons, coded rows with timings, codec info, and short audio files so the HTML report has
something to play. Quality follows a log-rate law plus per-speaker offsets and item noise, so the
curves look like real ones and the statistics have something to find.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

SAMPLE_RATE_HZ = 16000

# codec key -> (operating points {name: nominal kbps}, quality offset in "dB", measured/nominal ratio)
DEFAULT_CODECS: dict[str, tuple[dict[str, float], float, float]] = {
    "opus": ({"6": 6.0, "8": 8.0, "12": 12.0, "16": 16.0, "24": 24.0}, 0.0, 1.03),
    "toy:/ckpts/toy-v1.safetensors": ({"1": 1.5, "2": 3.0, "4": 6.0, "8": 12.0}, 3.0, 1.0),
    "mp3": ({"16": 16.0, "24": 24.0, "32": 32.0}, -4.0, 1.05),
}

METRIC_SPECS = {
    "si_sdr": {"higher_is_better": True, "unit": "dB"},
    "mel_distance": {"higher_is_better": False, "unit": ""},
    "pesq_wb": {"higher_is_better": True, "unit": "MOS"},
}


@dataclass
class SynthItem:
    """A synthetic item with the fields the store records for a dataset item (duck-typed ``Item``)."""

    id: str
    path: str
    domain: str
    dataset: str = "synth"
    split: str = "test"
    transcript: str | None = None
    speaker: str | None = None
    track: str | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.extra = self.extra or {}


def _signal(rng: np.random.Generator, domain: str, seconds: float) -> np.ndarray:
    """A short test signal: harmonic tones (music), a formant-ish buzz (speech), noise bursts (general)."""
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    if domain == "music":
        f0 = rng.choice([220.0, 261.6, 329.6])
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2
    elif domain == "speech":
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
        x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (np.sin(2 * np.pi * 2.5 * t) > -0.3)
    else:
        x = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 0.8 * t) > 0.2)
    x = x / (np.max(np.abs(x)) + 1e-9) * 0.5
    return x.astype(np.float32)


def make_items(audio_dir: Path, *, n_speakers: int = 6, per_speaker: int = 2, n_tracks: int = 3,
               per_track: int = 2, n_general: int = 4, seconds: float = 2.0, seed: int = 0) -> list[SynthItem]:
    """Write short test signals to ``audio_dir``: speakers' utterances, music track segments, general sounds."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    audio_dir.mkdir(parents=True, exist_ok=True)
    items: list[SynthItem] = []

    def add(item_id: str, domain: str, **kw: Any) -> None:
        path = audio_dir / f"{item_id}.wav"
        sf.write(str(path), _signal(rng, domain, seconds), SAMPLE_RATE_HZ, subtype="PCM_16")
        items.append(SynthItem(item_id, str(path), domain, duration_s=seconds, **kw))

    for s in range(n_speakers):
        for u in range(per_speaker):
            add(f"spk{s}-utt{u}", "speech", speaker=f"spk{s}", transcript="hello world")
    for k in range(n_tracks):
        for u in range(per_track):
            add(f"track{k}-seg{u}", "music", track=f"track{k}")
    for g in range(n_general):
        add(f"sound{g}", "general")
    return items


def _stable(text: str) -> int:
    """A process-independent hash (Python's ``hash`` of str is salted per process)."""
    return zlib.crc32(text.encode())


def quality(rate_kbps: float, offset: float, cluster_effect: float, noise: float) -> float:
    """Synthetic SI-SDR-like quality: 6 dB per doubling of rate, plus effects."""
    return 6.0 * math.log2(rate_kbps) + offset + cluster_effect + noise


def make_run(run_dir: str | Path, *, codecs: dict[str, tuple[dict[str, float], float, float]] | None = None,
             seed: int = 0, degrade: dict[str, float] | None = None, noise_db: float = 1.0,
             with_failures: bool = True, run_id: str | None = None, items: list[SynthItem] | None = None,
             write_recon: bool = True) -> Path:
    """Write a synthetic run; ``degrade={codec_key: dB}`` lowers a codec's quality (for gate tests).

    Item-level effects (per speaker/track offsets, item noise) depend only on ``seed``, so two runs
    with the same seed differ only where ``degrade`` says.
    """
    from bench.store import Store

    run_dir = Path(run_dir)
    codecs = codecs or DEFAULT_CODECS
    items = items if items is not None else make_items(run_dir / "synth_audio", seed=seed)
    run_id = run_id or run_dir.resolve().name
    rng = np.random.default_rng(seed + 1)
    clusters = sorted({it.speaker or it.track or it.id for it in items})
    cluster_effect = {c: float(rng.normal(0, 2.0)) for c in clusters}
    item_noise = {it.id: float(rng.normal(0, noise_db)) for it in items}
    truth = _Truth(cluster_effect, item_noise, degrade or {}, with_failures,
                   run_dir / "synth_recon" if write_recon else None)
    manifest = {
        "settings": {"codecs": ",".join(f"{c}@{o}" for c, (ops, _, _) in codecs.items() for o in ops),
                     "dataset": "synth", "split": "test", "root": None, "metrics": ",".join(METRIC_SPECS)},
        "metrics": METRIC_SPECS, "synthetic": True, "seed": seed,
    }
    with Store(run_dir / "results.sqlite") as store:
        store.put_run(run_id, manifest)
        store.put_items(run_id, items)
        for codec, (ops, offset, ratio) in codecs.items():
            store.put_codec_info(run_id, codec, {
                "parameters": 2_500_000 if ":" in codec else None, "device": "cpu",
                "peak_memory_mb": 310.0 if ":" in codec else 95.0, "checkpoint_hash": "ab12cd34ef56" if ":" in codec else "none"})
            for op, nominal in ops.items():
                results: list[dict[str, Any]] = []
                skipped: list[dict[str, Any]] = []
                for it in items:
                    store.put_coded(run_id, truth.coded_row(it, codec, op, truth.measured(it, nominal, ratio), nominal))
                    truth.add_scores(it, codec, op, nominal, offset, ratio, results, skipped)
                store.put_results(run_id, results)
                store.put_skipped(run_id, skipped)
    return run_dir


@dataclass
class _Truth:
    """The ground truth of a synthetic run: effects per cluster and item, degradations, planted failures."""

    cluster_effect: dict[str, float]
    item_noise: dict[str, float]
    degrade: dict[str, float]
    with_failures: bool
    recon_dir: Path | None  # where reconstructions are written; None writes none

    @staticmethod
    def measured(it: SynthItem, nominal: float, ratio: float) -> float:
        """The item's measured kbps: nominal times the codec's ratio, wobbling by up to 2 % per item."""
        return nominal * ratio * (1 + 0.02 * math.sin(_stable(it.id) % 7))

    @staticmethod
    def coded_row(it: SynthItem, codec: str, op: str, measured: float, nominal: float) -> dict[str, Any]:
        """The coded row of one pair: bytes from the measured rate, neural codecs slower than classic ones."""
        dur = it.duration_s or 2.0
        return {
            "item_id": it.id, "codec": codec, "op": op, "nominal_kbps": nominal,
            "measured_kbps": measured, "n_bytes": int(round(measured * 1000 * dur / 8)),
            "encode_s": dur * (0.02 if ":" not in codec else 0.3), "decode_s": dur * (0.01 if ":" not in codec else 0.2),
            "audio_s": dur, "status": "ok", "error": None, "cache_key": f"{codec}|{op}|{it.id}"}

    def add_scores(self, it: SynthItem, codec: str, op: str, nominal: float, offset: float, ratio: float,
                   results: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> None:
        """Append one pair's metric rows (and writes its reconstruction): quality from the log-rate law."""
        measured = self.measured(it, nominal, ratio)
        c = it.speaker or it.track or it.id
        q = quality(measured, offset - self.degrade.get(codec, 0.0), self.cluster_effect[c], self.item_noise[it.id])
        if self.recon_dir is not None:
            self.write_recon(it, f"{codec}|{op}|{it.id}", q)
        base = {"item_id": it.id, "codec": codec, "op": op, "nominal_kbps": nominal, "measured_kbps": measured}
        fail = self.with_failures and codec.startswith("toy") and op == "1" and it.id == "sound0"
        results.append(dict(base, metric="si_sdr", value=math.nan if fail else q,
                            status="failed" if fail else "ok",
                            error="decoder produced silence" if fail else None))
        results.append(dict(base, metric="mel_distance", value=max(0.05, 3.0 - 0.12 * q), status="ok"))
        if it.domain == "speech":
            mos = 1.0 + 3.5 / (1 + math.exp(-(q - 12) / 5))
            results.append(dict(base, metric="pesq_wb", value=mos, status="ok"))
        else:
            skipped.append(dict(base, metric="pesq_wb", reason=f"pesq_wb applies to speech only, item is {it.domain}"))

    def write_recon(self, it: SynthItem, key: str, q: float) -> None:
        """A reconstruction: the item plus white noise at the quality's SNR (seeded by the pair's key)."""
        import soundfile as sf

        assert self.recon_dir is not None
        x, sr = sf.read(it.path, dtype="float32")
        noise_gain = 10 ** (-q / 20)
        nrng = np.random.default_rng(_stable(key))
        y = x + noise_gain * np.std(x) * nrng.standard_normal(x.size).astype(np.float32)
        path = self.recon_dir / f"{_stable(key)}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.clip(y, -1, 1), sr, subtype="PCM_16")


def audio_source(run_dir: str | Path) -> Callable[[str, str | None, str | None], Path | None]:
    """An audio source for :func:`bench.reports.html.write_html` over a synthetic run."""
    import soundfile as sf  # noqa: F401 - fail early if missing

    from bench.reports.load import load_run

    data = load_run(run_dir)
    paths = {}
    for it in data.items.itertuples():
        paths[it.item_id] = Path(run_dir) / "synth_audio" / f"{it.item_id}.wav"

    def source(item_id: str, codec: str | None, op: str | None) -> Path | None:
        if codec is None:
            return paths.get(item_id)
        key = f"{codec}|{op}|{item_id}"
        return Path(run_dir) / "synth_recon" / f"{_stable(key)}.wav"

    return source
