"""``bench run``: encode, serialise, deserialise, decode and score a dataset with codecs.

For each item and each selected (codec, operating point):
  load (one place: ``bench.audio``) -> channel policy -> optional loudness normalisation
  -> resample to the codec's rate -> ``encode`` -> ``to_bytes`` (measured kbps) -> ``from_bytes``
  -> ``decode`` -> resample back to the item's rate -> cache (content addressed) -> score.

Metrics are scored in a process pool while the main process codes the next item. Results go
to ``RUN_DIR/results.sqlite`` (see ``bench.store``). A killed run resumes on the same command:
rows are keyed by (run, item, codec, operating point, metric) and written as each pair finishes,
finished pairs are skipped, and the reconstruction cache makes partially finished pairs cheap.
An item that fails (unreadable file, codec error, NaN output) is recorded with its reason and
the run goes on.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import EXIT_NOTHING_SCORED, UserError

# Metrics run by default: fast, reference-based, meaningful for every codec. The model-backed
# metrics (visqol, wer/cer, dnsmos) are slower; ask for them with --metrics or --metrics all.
DEFAULT_METRICS = ("si_sdr", "mel_distance", "stft_distance", "lsd", "gdd", "pesq_wb", "pesq_nb", "stoi", "estoi")


@dataclass
class RunConfig:
    codecs: str = "all"
    dataset: str | None = None
    split: str | None = None
    root: str | None = None
    dataset_options: dict[str, str] = field(default_factory=dict)
    metrics: str | None = None
    limit: int | None = None
    seed: int = 0
    item_ids: list[str] | None = None
    out_dir: str | None = None
    cache_dir: str | None = None
    workers: int | None = None
    device: str = "cpu"
    channel_policy: str = "mono"
    loudness_lufs: float | None = None
    align: str = "xcorr"
    progress: bool = True
    refresh: bool = False  # recode and rescore everything instead of reusing the cache and finished rows


#: settings that decide values for every row: a rerun into the same run directory with other
#: values is refused (it would mix results computed two ways under one manifest)
VALUE_SETTINGS = ("dataset", "split", "dataset_options", "channel_policy", "loudness_lufs", "align")


# --- resolution -------------------------------------------------------------------------------

def resolve_dataset(cfg: RunConfig):
    """(dataset object, split). ``--split test-other`` alone means the dataset that has that split."""
    from bench.registry import DATASETS

    if cfg.dataset:
        ds = DATASETS.get(cfg.dataset)
    elif cfg.split:
        owners = [d for _, d in DATASETS.items() if cfg.split in d.splits]
        if not owners:
            raise UserError(f"no dataset has a split {cfg.split!r}; pass --dataset (see `bench ls datasets`)")
        owners.sort(key=lambda d: d.name != "libritts")
        ds = owners[0]
    else:
        ds = DATASETS.get("demo")
    if cfg.dataset_options:
        configure = getattr(ds, "configure", None)
        if configure is None:
            raise UserError(f"dataset {ds.name!r} takes no options (got {sorted(cfg.dataset_options)})")
        ds = configure(**cfg.dataset_options) or ds
    return ds, ds.check_split(cfg.split)


def resolve_metrics(spec: str | None):
    from bench.registry import METRICS

    if spec is None or spec == "default":
        return [METRICS.get(n) for n in DEFAULT_METRICS if n in METRICS]
    if spec == "all":
        return [m for _, m in METRICS.items()]
    return [METRICS.get(n.strip()) for n in spec.split(",") if n.strip()]


def select_items(ds, split: str, cfg: RunConfig) -> list:
    items = list(ds.items(split, cfg.root))
    for it in items:
        it.dataset = it.dataset or ds.name
        it.split = it.split or split
    if cfg.item_ids is not None:
        wanted = set(cfg.item_ids)
        items = [it for it in items if it.id in wanted]
        missing = wanted - {it.id for it in items}
        if missing:
            raise UserError(f"{len(missing)} requested item id(s) not in {ds.name}/{split}, e.g. {sorted(missing)[:3]}")
    if cfg.limit is not None and cfg.limit < len(items):
        from bench.datasets.protocol import subsample

        items = subsample(items, cfg.limit, cfg.seed)
    return items


def default_run_dir(dataset: str, split: str) -> Path:
    return Path("runs") / f"{dataset}-{split}"


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("bench", "torch", "numpy", "scipy", "soundfile", "soxr", "av", "pesq", "pystoi",
                "visqol-python", "pocketsphinx", "jiwer", "speechmos", "onnxruntime", "numba", "pyloudnorm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# --- reference preparation and coding -------------------------------------------------------

class ItemError(RuntimeError):
    """An input item that cannot be used; the message names the file."""


def prepare_reference(item, cfg: RunConfig) -> tuple[np.ndarray, int, list[str]]:
    """Load an item, apply the channel and loudness policy. Returns (audio [C, T], rate, notes)."""
    from bench.audio import (
        AudioError,
        check_samples,
        load_audio,
        normalize_loudness,
        to_channels,
    )

    try:
        audio = load_audio(item.path, start_s=item.start_s, duration_s=item.duration_s,
                           stream_index=int(item.extra.get("stream_index", 0)))
    except AudioError as exc:
        raise ItemError(str(exc)) from exc
    x = to_channels(audio.samples, None, cfg.channel_policy)
    notes = check_samples(x, item.path)
    if not np.all(np.isfinite(x)):
        raise ItemError(f"{item.path}: contains NaN/Inf samples; refusing to code it")
    if cfg.loudness_lufs is not None:
        x, gain_db = normalize_loudness(x, audio.sample_rate_hz, cfg.loudness_lufs)
        notes.append(f"loudness gain {gain_db:+.2f} dB")
    return x, audio.sample_rate_hz, notes


def code_item(sel, ref: np.ndarray, sr: int, input_hash: str, cache, device: str,
              codec_fingerprint: str | None = None) -> tuple[np.ndarray, dict]:
    """Run one (codec, operating point) on one prepared reference, through the cache.

    The cache key is the codec's fingerprint (code, parameters, weights, backend versions), the
    operating point, the rates, the input's hash and the resampling code. Returns the
    reconstruction at the item's rate with the reference's shape, and the coded row.
    """
    import torch

    from bench.audio import fit_length, resample, to_channels
    from bench.cache import cache_key

    codec = sel.codec.load(device)
    rate = codec.spec.sample_rate_hz
    key = cache_key(codec_fingerprint or codec.fingerprint, sel.op, rate, sr, input_hash)
    hit = cache.get(key)
    if hit is None:
        x = resample(to_channels(ref, codec.spec.channels), sr, rate)
        wav = torch.from_numpy(np.ascontiguousarray(x))[None].to(codec.device)
        with torch.inference_mode():
            t0 = time.perf_counter()
            bitstream = codec.to_bytes(codec.encode(wav, sel.op))
            _sync(codec.device)
            t1 = time.perf_counter()
            y = codec.decode(codec.from_bytes(bitstream))
            _sync(codec.device)
            t2 = time.perf_counter()
        y = y[0].detach().float().cpu().numpy()
        if not np.all(np.isfinite(y)):
            raise RuntimeError(f"{sel.label} produced NaN/Inf samples")
        check_decoded_length(y.shape[-1], x.shape[-1], rate, sel.label)
        y = fit_length(to_channels(resample(y, rate, sr), ref.shape[0]), ref.shape[-1])
        meta = {"encode_s": t1 - t0, "decode_s": t2 - t1, "codec_rate_hz": rate, "codec": sel.key, "op": sel.op.name}
        cache.put(key, y, sr, bitstream, meta)
        hit = cache.get(key)
        if hit is None:
            raise RuntimeError(f"cache write failed for {sel.label} under {cache.root}")
    recon, _, bitstream, meta = hit
    duration_s = ref.shape[-1] / sr
    row = {
        "codec": sel.key, "op": sel.op.name, "nominal_kbps": sel.op.nominal_kbps,
        "measured_kbps": len(bitstream) * 8 / duration_s / 1000.0, "n_bytes": len(bitstream),
        "encode_s": meta.get("encode_s"), "decode_s": meta.get("decode_s"), "audio_s": duration_s,
        "status": "ok", "error": None, "cache_key": key,
    }
    return recon, row


def check_decoded_length(n_decoded: int, n_input: int, rate_hz: int, label: str) -> None:
    """Fail a pair whose decode is not the input's length (a truncated decode must never score as perfect).

    One tolerance for the harness: :func:`bench.scoring.length_mismatch` (1 % or 50 ms), here at
    the codec's rate and before any padding to the reference's length.
    """
    from bench.scoring import length_mismatch

    why = length_mismatch(n_input, n_decoded, rate_hz)
    if why:
        raise RuntimeError(f"{label} decoded {n_decoded} samples for an input of {n_input}: {why}")


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def reconstruction_path(run_dir: str | Path, cache_key: str) -> Path | None:
    """Path of a cached reconstruction (FLAC at the item's rate) recorded in a run, or None.

    None also when the entry fails its digest check: a report never plays a damaged file.
    """
    from bench.cache import ReconCache
    from bench.store import Store

    run_dir = Path(run_dir)
    with Store(run_dir / "results.sqlite", readonly=True) as store:
        ids = store.run_ids()
        cache_dir = store.manifest(ids[-1]).get("cache_dir") if ids else None
    cache = ReconCache(cache_dir, readonly=True)
    return cache.audio_path(cache_key) if cache.get(cache_key) is not None else None


# --- scoring (runs in worker processes) -----------------------------------------------------

def _init_worker(parent_pid: int | None = None) -> None:
    from bench.workers import init_metric_worker

    init_metric_worker(parent_pid)


def score_task(ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: dict, align: str) -> dict:
    """Score one pair with the named metrics; returns plain data (picklable)."""
    from bench.datasets.base import Item
    from bench.registry import METRICS
    from bench.scoring import score_pair

    specs = [METRICS.get(n) for n in metric_names]
    res = score_pair(ref, deg, sr, specs, item=Item(**item), align=align)
    return {
        "values": {k: (v.value, v.error, v.extra) for k, v in res.values.items()},
        "skipped": {k: s.reason for k, s in res.skipped.items()},
    }


class _InlineExecutor:
    """Same surface as an executor, for --workers 1 (no process overhead; easy to debug).

    Scores with torch on one thread, as the pool's workers do, so a value never depends on
    ``--workers`` (a float32 sum split over more threads differs in its last bits).
    """

    def submit(self, fn, *args):
        import torch

        fut: cf.Future = cf.Future()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(exc)
        finally:
            torch.set_num_threads(threads)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


# --- the run ----------------------------------------------------------------------------------

def _failed_rows(item, sel, metrics, reason: str, coded: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Rows for a pair that could not be scored: failed where the metric applies, skipped elsewhere."""
    rows, skipped = [], []
    for m in metrics:
        ok, why = m.applies_to(item.domain, bool(item.transcript))
        base = {"item_id": item.id, "codec": sel.key, "op": sel.op.name, "metric": m.name}
        if not ok:
            skipped.append(dict(base, reason=why))
        else:
            rows.append(dict(base, nominal_kbps=sel.op.nominal_kbps,
                             measured_kbps=(coded or {}).get("measured_kbps"),
                             value=float("nan"), status="failed", error=reason))
    return rows, skipped


def build_manifest(cfg: RunConfig, ds, split: str, items: list, selections: list, metrics: list, cache_dir: str) -> dict:
    from bench.datasets.base import item_list_hash

    try:
        from bench.datasets.protocol import protocol_manifest

        protocol = protocol_manifest(ds, split, items, limit=cfg.limit, seed=cfg.seed,
                                     loudness_lufs=cfg.loudness_lufs, channel_policy=cfg.channel_policy)
    except ImportError:
        protocol = {"dataset": ds.name, "split": split, "n_items": len(items), "item_list_sha256": item_list_hash(items)}
    codecs = {}
    for sel in selections:
        info = codecs.setdefault(sel.key, {"operating_points": {}})
        info["operating_points"][sel.op.name] = sel.op.nominal_kbps
        try:
            info["checkpoint_hash"] = sel.codec.checkpoint_hash
            info["sample_rate_hz"] = sel.codec.spec.sample_rate_hz
        except Exception as exc:  # noqa: BLE001
            info["error"] = str(exc)
    return {
        "bench_command": sys.argv,
        "settings": asdict(cfg),
        "dataset": protocol,
        "item_list_sha256": item_list_hash(items),
        "codecs": codecs,
        "metrics": {m.name: {"version": m.version, "source": m.source, "sample_rate_hz": m.sample_rate_hz,
                             "higher_is_better": m.higher_is_better, "unit": m.unit} for m in metrics},
        "versions": library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "cache_dir": cache_dir,
        "seed": cfg.seed,
    }


class RunMismatchError(UserError):
    """A rerun into a run directory whose results were computed under other settings."""


def value_settings(cfg: RunConfig, ds, split: str) -> dict[str, Any]:
    """The run settings that decide every value (see VALUE_SETTINGS)."""
    return {"dataset": ds.name, "split": split, "dataset_options": dict(sorted(cfg.dataset_options.items())),
            "channel_policy": cfg.channel_policy, "loudness_lufs": cfg.loudness_lufs, "align": cfg.align}


def _stored_value_settings(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The value settings a stored run was made with (read from older manifests too)."""
    if "value_settings" in manifest:
        return manifest["value_settings"]
    settings, protocol = manifest.get("settings"), manifest.get("dataset") or {}
    if not settings:
        return None
    return {"dataset": protocol.get("dataset", settings.get("dataset")), "split": protocol.get("split", settings.get("split")),
            "dataset_options": dict(sorted((settings.get("dataset_options") or {}).items())),
            "channel_policy": settings.get("channel_policy"), "loudness_lufs": settings.get("loudness_lufs"),
            "align": settings.get("align")}


def check_same_settings(store, run_id: str, run_dir: Path, current: dict[str, Any]) -> None:
    """Refuse a rerun whose value settings differ from the stored run's, naming every difference."""
    if run_id not in store.run_ids():
        return
    stored = _stored_value_settings(store.manifest(run_id))
    if stored is None:
        return
    diffs = [f"{k}: {stored.get(k)!r} there, {current[k]!r} now" for k in VALUE_SETTINGS if stored.get(k) != current[k]]
    if diffs:
        raise RunMismatchError(f"{run_dir} holds results computed with other settings ({'; '.join(diffs)}); "
                               "mixing them would make its numbers wrong. Use another --out (or remove that folder).")


def item_fingerprint(item) -> str:
    """Hash of what decides an item's values: its file's bytes, the excerpt, its transcript and domain."""
    from bench.codecs.base import file_sha256
    from bench.fingerprint import digest

    try:
        content = file_sha256(item.path)
    except OSError as exc:
        content = f"unreadable: {exc.strerror or exc}"
    return digest([content, item.start_s, item.duration_s, item.extra.get("stream_index", 0),
                   item.transcript, item.domain], length=24)


def reconcile(store, run_id: str, kind: str, current: dict[str, str], *, say) -> None:
    """Discard a run's rows whose inputs changed since they were computed, then record the current identities.

    Rows stored before identities existed (no stored fingerprint) cannot be vouched for either,
    so they are discarded too. ``say`` prints one line per discarded group.
    """
    stored = store.identities(run_id, kind)
    present = store.names_in(run_id, kind)
    changed = sorted(n for n in current if n in present and stored.get(n) != current[n])
    if changed:
        n_rows = store.discard(run_id, kind, changed)
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        say(f"note: {len(changed)} {kind}(s) changed since the stored results were computed ({shown}); "
            f"their {n_rows} earlier row(s) were discarded and are recomputed")
    store.put_identities(run_id, kind, current)


def metric_identities(metrics: list) -> dict[str, str]:
    from bench.metrics.base import metric_fingerprint

    return {m.name: metric_fingerprint(m) for m in metrics}


@dataclass
class _Plan:
    ds: Any
    split: str
    items: list
    selections: list
    metrics: list
    run_dir: Path


def plan_run(cfg: RunConfig) -> _Plan:
    """Resolve the dataset, items, codecs and metrics of a run (no audio is touched yet)."""
    from bench.codecs.base import select_codecs

    ds, split = resolve_dataset(cfg)
    items = select_items(ds, split, cfg)
    if not items:
        raise UserError(f"dataset {ds.name}/{split} has no items")
    selections = select_codecs(cfg.codecs)
    metrics = resolve_metrics(cfg.metrics)
    run_dir = Path(cfg.out_dir) if cfg.out_dir else default_run_dir(ds.name, split)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} exists and is not a folder")
    return _Plan(ds, split, items, selections, metrics, run_dir)


def load_codecs(selections: list, device: str) -> tuple[dict[str, str], dict[str, str]]:
    """Load each selected codec once: (key -> fingerprint, key -> reason it could not be loaded)."""
    fingerprints, errors = {}, {}
    for sel in selections:
        if sel.key in fingerprints or sel.key in errors:
            continue
        try:
            fingerprints[sel.key] = sel.codec.load(device).fingerprint
        except Exception as exc:  # noqa: BLE001 - recorded for each of its pairs; the run goes on
            errors[sel.key] = f"{sel.key} could not be loaded: {type(exc).__name__}: {exc}"
    return fingerprints, errors


class _Run:
    """One execution of a plan against a store: the per-item loop, the scoring pool, the counters."""

    def __init__(self, cfg: RunConfig, plan: _Plan, store, run_id: str, cache):
        self.cfg, self.plan, self.store, self.run_id, self.cache = cfg, plan, store, run_id, cache
        self.done: set[tuple[str, str, str, str]] = set()  # filled after the identities are reconciled
        self.workers = cfg.workers or os.cpu_count() or 1
        self.pending: dict[cf.Future, tuple] = {}
        self.codec_seen: set[str] = set()
        self.fingerprints: dict[str, str] = {}
        self.load_errors: dict[str, str] = {}
        from tqdm import tqdm

        self.bar = tqdm(total=len(plan.items) * len(plan.selections), unit="pair", disable=not cfg.progress,
                        dynamic_ncols=True, desc=f"{plan.ds.name}/{plan.split}")

    def executor(self):
        if self.workers <= 1:
            return _InlineExecutor()
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                      initializer=_init_worker, initargs=(os.getpid(),))

    def fail_pair(self, item, sel, metrics: list, reason: str, coded: dict | None = None) -> None:
        if coded is None:
            self.store.put_coded(self.run_id, {"item_id": item.id, "codec": sel.key, "op": sel.op.name,
                                               "nominal_kbps": sel.op.nominal_kbps, "status": "failed", "error": reason})
        rows, skipped = _failed_rows(item, sel, metrics, reason, coded)
        self.store.put_results(self.run_id, rows)
        self.store.put_skipped(self.run_id, skipped)

    def collect(self, fut: cf.Future) -> None:
        item, sel, coded, need = self.pending.pop(fut)
        try:
            out = fut.result()
        except Exception as exc:  # noqa: BLE001 - a crashed worker fails this pair only
            self.fail_pair(item, sel, need, f"scoring crashed: {type(exc).__name__}: {exc}", coded)
        else:
            rows = [{"item_id": item.id, "codec": sel.key, "op": sel.op.name, "metric": name,
                     "nominal_kbps": sel.op.nominal_kbps, "measured_kbps": coded["measured_kbps"],
                     "value": v, "status": "ok" if err is None else "failed", "error": err, "extra": extra}
                    for name, (v, err, extra) in out["values"].items()]
            skipped = [{"item_id": item.id, "codec": sel.key, "op": sel.op.name, "metric": name, "reason": reason}
                       for name, reason in out["skipped"].items()]
            self.store.put_results(self.run_id, rows)
            self.store.put_skipped(self.run_id, skipped)
        self.bar.update(1)

    def drain(self, block_until: int) -> None:
        while len(self.pending) > block_until:
            finished, _ = cf.wait(list(self.pending), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                self.collect(fut)

    def run_item(self, item, executor) -> None:
        from bench.audio import array_hash

        todo = {sel.label: [m for m in self.plan.metrics if (item.id, sel.key, sel.op.name, m.name) not in self.done]
                for sel in self.plan.selections}
        if not any(todo.values()):
            self.bar.update(len(self.plan.selections))
            return
        try:
            ref, sr, notes = prepare_reference(item, self.cfg)
        except ItemError as exc:
            for sel in self.plan.selections:
                if todo[sel.label]:
                    self.fail_pair(item, sel, todo[sel.label], str(exc))
                self.bar.update(1)
            return
        if notes:
            item.extra["notes"] = notes
        item.duration_s = item.duration_s or ref.shape[-1] / sr
        self.store.put_items(self.run_id, [item], {item.id: ref.shape[-1] / sr})
        input_hash = array_hash(ref, sr)
        for sel in self.plan.selections:
            need = todo[sel.label]
            if need:
                self.code_and_submit(item, sel, need, ref, sr, input_hash, executor)
            else:
                self.bar.update(1)

    def code_and_submit(self, item, sel, need: list, ref, sr: int, input_hash: str, executor) -> None:
        if sel.key in self.load_errors:
            self.fail_pair(item, sel, need, self.load_errors[sel.key])
            self.bar.update(1)
            return
        try:
            recon, coded = code_item(sel, ref, sr, input_hash, self.cache, self.cfg.device,
                                     self.fingerprints.get(sel.key))
        except Exception as exc:  # noqa: BLE001 - record and go on
            self.fail_pair(item, sel, need, f"{sel.label} failed on {item.path}: {type(exc).__name__}: {exc}")
            self.bar.update(1)
            return
        coded["item_id"] = item.id
        self.store.put_coded(self.run_id, coded)
        if sel.key not in self.codec_seen:
            self.codec_seen.add(sel.key)
            self.store.put_codec_info(self.run_id, sel.key, _codec_info(sel.codec))
        fut = executor.submit(score_task, ref, recon, sr, [m.name for m in need], item.to_dict(), self.cfg.align)
        self.pending[fut] = (item, sel, coded, need)
        self.drain(2 * self.workers)

    def execute(self) -> None:
        executor = self.executor()
        try:
            for item in self.plan.items:
                self.run_item(item, executor)
            self.drain(0)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            self.bar.close()
            raise
        executor.shutdown(wait=True)
        self.bar.close()
        for key in self.codec_seen:
            sel = next(s for s in self.plan.selections if s.key == key)
            self.store.put_codec_info(self.run_id, key, _codec_info(sel.codec))


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def run_benchmark(cfg: RunConfig, *, say=_say) -> Path:
    """Run (or resume) a benchmark; returns the run directory.

    Resume is keyed by everything that decides a value: a rerun with other value settings is
    refused (:class:`RunMismatchError`); rows whose item content, codec fingerprint or metric
    version and code changed are discarded and recomputed; the rest are kept.
    """
    from bench.cache import ReconCache
    from bench.store import Store

    plan = plan_run(cfg)
    cache = ReconCache(cfg.cache_dir, refresh=cfg.refresh)
    run_id = plan.run_dir.resolve().name
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    with Store(plan.run_dir / "results.sqlite") as store:
        current = value_settings(cfg, plan.ds, plan.split)
        check_same_settings(store, run_id, plan.run_dir, current)
        run = _Run(cfg, plan, store, run_id, cache)
        run.fingerprints, run.load_errors = load_codecs(plan.selections, cfg.device)
        codec_ids = dict(run.fingerprints, **{k: "unloadable" for k in run.load_errors})
        reconcile(store, run_id, "codec", codec_ids, say=say)
        reconcile(store, run_id, "metric", metric_identities(plan.metrics), say=say)
        reconcile(store, run_id, "item", {it.id: item_fingerprint(it) for it in plan.items}, say=say)
        run.done = set() if cfg.refresh else store.done_results(run_id)
        manifest = build_manifest(cfg, plan.ds, plan.split, plan.items, plan.selections, plan.metrics, str(cache.root))
        manifest.update(value_settings=current, codec_fingerprints=codec_ids,
                        started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        store.put_run(run_id, manifest)
        store.put_items(run_id, plan.items)
        _write_manifest(plan.run_dir, manifest)
        run.execute()
        if cache.problems:
            say(f"note: {len(cache.problems)} damaged cache entr{'y' if len(cache.problems) == 1 else 'ies'} "
                f"recomputed ({cache.problems[0]}{' ...' if len(cache.problems) > 1 else ''})")
        manifest["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["counts"] = {t: store.count(t, run_id) for t in ("results", "skipped", "coded")}
        manifest["cache_problems"] = cache.problems
        store.put_run(run_id, manifest)
        _write_manifest(plan.run_dir, manifest)
    return plan.run_dir


def _write_manifest(run_dir: Path, manifest: dict) -> None:
    tmp = run_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, run_dir / "manifest.json")


def _codec_info(codec) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"name": codec.name, "checkpoint": codec.checkpoint, "checkpoint_hash": codec.checkpoint_hash,
                            "parameters": codec.num_parameters(), "device": str(codec.device),
                            "sample_rate_hz": codec.spec.sample_rate_hz}
    if codec.device.type == "cuda":
        info["peak_memory_mb"] = torch.cuda.max_memory_allocated(codec.device) / 2**20
        info["peak_memory_kind"] = "torch.cuda.max_memory_allocated (process-wide)"
    else:
        info["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        info["peak_memory_kind"] = "process peak RSS (ru_maxrss), all codecs of the run together"
    return info


# --- CLI ------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    from bench.argtypes import (
        existing_file,
        key_value,
        non_negative_int,
        optional_lufs,
        positive_int,
        torch_device,
        writable_dir,
    )

    p.add_argument("--codecs", default="all", help="'all', names, globs, NAME@OP, NAME:CHECKPOINT[@OP]; comma separated")
    p.add_argument("--dataset", default=None, help="dataset name (default: demo; with --split only, the dataset owning it)")
    p.add_argument("--split", default=None, help="dataset split, e.g. test-other (LibriTTS)")
    p.add_argument("--root", default=None, help="dataset root directory (else $BENCH_DATA_ROOT or the config file)")
    p.add_argument("--dataset-opt", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="dataset option (repeatable)")
    p.add_argument("--metrics", default=None, help=f"comma list, 'all' or 'default' ({','.join(DEFAULT_METRICS)})")
    p.add_argument("--limit", type=positive_int, default=None, help="seeded random subset of N items")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--items", default=None, type=existing_file, help="file with one item id per line to restrict the run to")
    p.add_argument("--out", default=None, type=writable_dir, help="run directory (default runs/DATASET-SPLIT)")
    p.add_argument("--cache-dir", default=None, type=writable_dir,
                   help="reconstruction cache (default $BENCH_CACHE_DIR/recon or ~/.cache/bench/recon)")
    p.add_argument("--refresh", action="store_true",
                   help="recode and rescore everything: ignore cached reconstructions and finished rows")
    p.add_argument("--workers", type=positive_int, default=None, help="metric worker processes (default: one per core)")
    p.add_argument("--device", default="cpu", type=torch_device, help="torch device for neural codecs (cpu, cuda, cuda:1)")
    p.add_argument("--channels", default="mono", choices=["mono", "first", "keep"], help="channel policy (default mono mixdown)")
    p.add_argument("--loudness", default=None, type=optional_lufs,
                   help="normalise items to this LUFS before coding (-70..0, e.g. -16); default off")
    p.add_argument("--align", default="xcorr", choices=["xcorr", "report", "none"], help="delay alignment policy before intrusive metrics")
    p.add_argument("--no-progress", action="store_true")


def read_item_ids(path: str) -> list[str]:
    """One item id per line (blank lines and '#' comments ignored)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--items {path}: cannot read it ({exc})") from None
    ids = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise UserError(f"--items {path}: lists no item ids")
    return ids


def config_from_args(args: argparse.Namespace) -> RunConfig:
    from bench.argtypes import check_env_dir

    check_env_dir("BENCH_CACHE_DIR")
    item_ids = read_item_ids(args.items) if args.items else None
    return RunConfig(codecs=args.codecs, dataset=args.dataset, split=args.split, root=args.root,
                     dataset_options=dict(args.dataset_opt), metrics=args.metrics, limit=args.limit, seed=args.seed,
                     item_ids=item_ids, out_dir=args.out, cache_dir=args.cache_dir, workers=args.workers,
                     device=args.device, channel_policy=args.channels, loudness_lufs=args.loudness,
                     align=args.align, progress=not args.no_progress, refresh=args.refresh)


def summarize(run_dir: Path) -> tuple[str, bool]:
    """The closing line of a run (scored, failed and their commonest reasons) and whether anything scored."""
    from collections import Counter

    from bench.store import Store

    with Store(run_dir / "results.sqlite", readonly=True) as store:
        rid = store.run_ids()[-1]
        rows = store.conn.execute("SELECT status, error FROM results WHERE run_id=?", (rid,)).fetchall()
        n_skipped = store.count("skipped", rid)
    n_ok = sum(1 for status, _ in rows if status == "ok")
    reasons = Counter(err or "unknown" for status, err in rows if status != "ok")
    line = f"{n_ok} results scored, {len(rows) - n_ok} failed, {n_skipped} not applicable in {run_dir}/results.sqlite"
    if reasons:
        top = "; ".join(f"{n} x {reason[:160]}" for reason, n in reasons.most_common(3))
        line += f"\n  failures: {top}" + (f"; and {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else "")
    return line, n_ok > 0


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    run_dir = run_benchmark(cfg)
    line, any_scored = summarize(run_dir)
    print(f"{line}  [{time.perf_counter() - t0:.1f} s]")
    if not any_scored:
        print("error: nothing was scored (every pair failed; reasons above)", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    print(f"next: bench report {run_dir}")
    return 0
