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
from typing import Any, Iterable

import numpy as np

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


# --- resolution -------------------------------------------------------------------------------

def resolve_dataset(cfg: RunConfig):
    """(dataset object, split). ``--split test-other`` alone means the dataset that has that split."""
    from bench.registry import DATASETS

    if cfg.dataset:
        ds = DATASETS.get(cfg.dataset)
    elif cfg.split:
        owners = [d for _, d in DATASETS.items() if cfg.split in d.splits]
        if not owners:
            raise ValueError(f"no dataset has a split {cfg.split!r}; pass --dataset (see `bench ls datasets`)")
        owners.sort(key=lambda d: d.name != "libritts")
        ds = owners[0]
    else:
        ds = DATASETS.get("demo")
    if cfg.dataset_options:
        configure = getattr(ds, "configure", None)
        if configure is None:
            raise ValueError(f"dataset {ds.name!r} takes no options (got {sorted(cfg.dataset_options)})")
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
            raise ValueError(f"{len(missing)} requested item id(s) not in {ds.name}/{split}, e.g. {sorted(missing)[:3]}")
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
    from bench.audio import AudioError, check_samples, load_audio, normalize_loudness, to_channels

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


def code_item(sel, ref: np.ndarray, sr: int, input_hash: str, cache, device: str) -> tuple[np.ndarray, dict]:
    """Run one (codec, operating point) on one prepared reference, through the cache.

    Returns the reconstruction at the item's rate with the reference's shape, and the coded row.
    """
    import torch

    from bench.audio import fit_length, resample, to_channels
    from bench.cache import cache_key

    codec = sel.codec.load(device)
    rate = codec.spec.sample_rate_hz
    key = cache_key(sel.key, codec.checkpoint_hash, sel.op.name, rate, sr, input_hash)
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


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def reconstruction_path(run_dir: str | Path, cache_key: str) -> Path | None:
    """Path of a cached reconstruction (FLAC at the item's rate) recorded in a run, or None."""
    from bench.cache import ReconCache
    from bench.store import Store

    run_dir = Path(run_dir)
    with Store(run_dir / "results.sqlite") as store:
        ids = store.run_ids()
        cache_dir = store.manifest(ids[-1]).get("cache_dir") if ids else None
    path = ReconCache(cache_dir).audio_path(cache_key)
    return path if path.exists() else None


# --- scoring (runs in worker processes) -----------------------------------------------------

def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


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
    """Same surface as an executor, for --workers 1 (no process overhead; easy to debug)."""

    def submit(self, fn, *args):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(exc)
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


def run_benchmark(cfg: RunConfig) -> Path:
    """Run (or resume) a benchmark; returns the run directory."""
    from bench.audio import array_hash
    from bench.cache import ReconCache
    from bench.codecs.base import select_codecs
    from bench.store import Store

    ds, split = resolve_dataset(cfg)
    items = select_items(ds, split, cfg)
    if not items:
        raise ValueError(f"dataset {ds.name}/{split} has no items")
    selections = select_codecs(cfg.codecs)
    metrics = resolve_metrics(cfg.metrics)
    run_dir = Path(cfg.out_dir) if cfg.out_dir else default_run_dir(ds.name, split)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = ReconCache(cfg.cache_dir)
    run_id = run_dir.resolve().name
    store = Store(run_dir / "results.sqlite")
    manifest = build_manifest(cfg, ds, split, items, selections, metrics, str(cache.root))
    manifest["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.put_run(run_id, manifest)
    store.put_items(run_id, items)
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))

    done = store.done_results(run_id)
    workers = cfg.workers or os.cpu_count() or 1
    executor = (_InlineExecutor() if workers <= 1 else
                cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                       initializer=_init_worker))
    pending: dict[cf.Future, tuple] = {}
    stats = {"pairs": 0, "cached_pairs": 0, "failed_pairs": 0}

    from tqdm import tqdm

    bar = tqdm(total=len(items) * len(selections), unit="pair", disable=not cfg.progress, dynamic_ncols=True,
               desc=f"{ds.name}/{split}")

    def drain(block_until: int) -> None:
        while len(pending) > block_until:
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                item, sel, coded = pending.pop(fut)
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker fails this pair only
                    rows, skipped = _failed_rows(item, sel, metrics, f"scoring crashed: {type(exc).__name__}: {exc}", coded)
                else:
                    rows = [{"item_id": item.id, "codec": sel.key, "op": sel.op.name, "metric": name,
                             "nominal_kbps": sel.op.nominal_kbps, "measured_kbps": coded["measured_kbps"],
                             "value": v, "status": "ok" if err is None else "failed", "error": err, "extra": extra}
                            for name, (v, err, extra) in out["values"].items()]
                    skipped = [{"item_id": item.id, "codec": sel.key, "op": sel.op.name, "metric": name,
                                "reason": reason} for name, reason in out["skipped"].items()]
                store.put_results(run_id, rows)
                store.put_skipped(run_id, skipped)
                bar.update(1)

    codec_seen: set[str] = set()
    try:
        for item in items:
            todo = {sel.label: [m for m in metrics if (item.id, sel.key, sel.op.name, m.name) not in done]
                    for sel in selections}
            if not any(todo.values()):
                bar.update(len(selections))
                continue
            try:
                ref, sr, notes = prepare_reference(item, cfg)
            except ItemError as exc:
                for sel in selections:
                    if todo[sel.label]:
                        store.put_coded(run_id, {"item_id": item.id, "codec": sel.key, "op": sel.op.name,
                                                 "nominal_kbps": sel.op.nominal_kbps, "status": "failed",
                                                 "error": str(exc)})
                        rows, skipped = _failed_rows(item, sel, todo[sel.label], str(exc))
                        store.put_results(run_id, rows)
                        store.put_skipped(run_id, skipped)
                    bar.update(1)
                stats["failed_pairs"] += len(selections)
                continue
            if notes:
                item.extra["notes"] = notes
            item.duration_s = item.duration_s or ref.shape[-1] / sr
            store.put_items(run_id, [item], {item.id: ref.shape[-1] / sr})
            input_hash = array_hash(ref, sr)
            for sel in selections:
                need = todo[sel.label]
                if not need:
                    bar.update(1)
                    continue
                stats["pairs"] += 1
                try:
                    recon, coded = code_item(sel, ref, sr, input_hash, cache, cfg.device)
                except Exception as exc:  # noqa: BLE001 - record and go on
                    reason = f"{sel.label} failed on {item.path}: {type(exc).__name__}: {exc}"
                    store.put_coded(run_id, {"item_id": item.id, "codec": sel.key, "op": sel.op.name,
                                             "nominal_kbps": sel.op.nominal_kbps, "status": "failed", "error": reason})
                    rows, skipped = _failed_rows(item, sel, need, reason)
                    store.put_results(run_id, rows)
                    store.put_skipped(run_id, skipped)
                    stats["failed_pairs"] += 1
                    bar.update(1)
                    continue
                coded["item_id"] = item.id
                store.put_coded(run_id, coded)
                if sel.key not in codec_seen:
                    codec_seen.add(sel.key)
                    store.put_codec_info(run_id, sel.key, _codec_info(sel.codec))
                fut = executor.submit(score_task, ref, recon, sr, [m.name for m in need], item.to_dict(), cfg.align)
                pending[fut] = (item, sel, coded)
                drain(2 * workers)
        drain(0)
    except KeyboardInterrupt:
        executor.shutdown(wait=False, cancel_futures=True)
        bar.close()
        store.close()
        raise
    executor.shutdown(wait=True)
    bar.close()
    for key in codec_seen:
        sel = next(s for s in selections if s.key == key)
        store.put_codec_info(run_id, key, _codec_info(sel.codec))
    manifest["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["counts"] = {"results": store.count("results", run_id), "skipped": store.count("skipped", run_id),
                          "coded": store.count("coded", run_id)}
    store.put_run(run_id, manifest)
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    store.close()
    return run_dir


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

def _kv(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise argparse.ArgumentTypeError(f"--dataset-opt expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codecs", default="all", help="'all', names, globs, NAME@OP, NAME:CHECKPOINT[@OP]; comma separated")
    p.add_argument("--dataset", default=None, help="dataset name (default: demo; with --split only, the dataset owning it)")
    p.add_argument("--split", default=None, help="dataset split, e.g. test-other (LibriTTS)")
    p.add_argument("--root", default=None, help="dataset root directory (else $BENCH_DATA_ROOT or the config file)")
    p.add_argument("--dataset-opt", action="append", default=[], metavar="KEY=VALUE", help="dataset option (repeatable)")
    p.add_argument("--metrics", default=None, help=f"comma list, 'all' or 'default' ({','.join(DEFAULT_METRICS)})")
    p.add_argument("--limit", type=int, default=None, help="seeded random subset of N items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--items", default=None, help="file with one item id per line to restrict the run to")
    p.add_argument("--out", default=None, help="run directory (default runs/DATASET-SPLIT)")
    p.add_argument("--cache-dir", default=None, help="reconstruction cache (default $BENCH_CACHE_DIR/recon or ~/.cache/bench/recon)")
    p.add_argument("--workers", type=int, default=None, help="metric worker processes (default: one per core)")
    p.add_argument("--device", default="cpu", help="torch device for neural codecs (cpu, cuda)")
    p.add_argument("--channels", default="mono", choices=["mono", "first", "keep"], help="channel policy (default mono mixdown)")
    p.add_argument("--loudness", default=None, help="normalise items to this LUFS before coding (e.g. -16); default off")
    p.add_argument("--align", default="xcorr", choices=["xcorr", "report", "none"], help="delay alignment policy before intrusive metrics")
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    item_ids = None
    if args.items:
        item_ids = [line.strip() for line in Path(args.items).read_text().splitlines() if line.strip()]
    return RunConfig(codecs=args.codecs, dataset=args.dataset, split=args.split, root=args.root,
                     dataset_options=_kv(args.dataset_opt), metrics=args.metrics, limit=args.limit, seed=args.seed,
                     item_ids=item_ids, out_dir=args.out, cache_dir=args.cache_dir, workers=args.workers,
                     device=args.device, channel_policy=args.channels,
                     loudness_lufs=None if args.loudness in (None, "none") else float(args.loudness),
                     align=args.align, progress=not args.no_progress)


def main(args: argparse.Namespace) -> int:
    from bench.datasets.base import DataMissingError
    from bench.registry import UnknownNameError

    cfg = config_from_args(args)
    t0 = time.perf_counter()
    try:
        run_dir = run_benchmark(cfg)
    except (DataMissingError, UnknownNameError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bench.store import Store

    with Store(run_dir / "results.sqlite") as store:
        rid = store.run_ids()[-1]
        n = store.count("results", rid)
        n_failed = store.conn.execute("SELECT COUNT(*) FROM results WHERE run_id=? AND status!='ok'", (rid,)).fetchone()[0]
    print(f"{n} results ({n_failed} failed) in {run_dir}/results.sqlite  [{time.perf_counter() - t0:.1f} s]")
    print(f"next: bench report {run_dir}")
    return 0
