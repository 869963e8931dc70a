"""``bench run``'s engine: encode, serialise, deserialise, decode and score a dataset with codecs.

For each item and each selected (codec, operating point) the reference is prepared and coded
through the cache (``bench.pipeline.code``) and scored in a process pool while the main process
codes the next item (``bench.pipeline.engine``). Results go to ``RUN_DIR/results.sqlite`` (see
``bench.store``). A killed run resumes on the same command: rows are keyed by (run, item, codec,
operating point, metric) and written as each pair finishes, finished pairs are skipped, and the
reconstruction cache makes partially finished pairs cheap; rows computed from other inputs are
discarded first (``bench.pipeline.identity``). An item that fails (unreadable file, codec error,
NaN output) is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.codecs.base import Codec, Selection
    from bench.datasets.base import Dataset, Item
    from bench.metrics.base import MetricSpec
    from bench.store import Store


from bench.errors import UserError
from bench.pipeline.code import ItemError, code_item, prepare_reference
from bench.pipeline.engine import InlineExecutor, _init_worker, score_task
from bench.pipeline.identity import check_same_settings, item_fingerprint, metric_identities, reconcile, value_settings
from bench.types import CodedRow, ResultRow, RunConfig, SkippedRow


def default_run_dir(dataset: str, split: str) -> Path:
    """Where a run goes without ``--out``: ``runs/DATASET-SPLIT``."""
    return Path("runs") / f"{dataset}-{split}"


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that decide values (recorded in the manifest)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("bench", "torch", "numpy", "scipy", "soundfile", "soxr", "av", "pesq", "pystoi",
                "visqol-python", "pocketsphinx", "jiwer", "speechmos", "onnxruntime", "numba", "pyloudnorm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _failed_rows(item: Item, sel: Selection, metrics: list[MetricSpec], reason: str,
                 coded: CodedRow | None = None) -> tuple[list[ResultRow], list[SkippedRow]]:
    """Rows for a pair that could not be scored: failed where the metric applies, skipped elsewhere."""
    rows: list[ResultRow] = []
    skipped: list[SkippedRow] = []
    for m in metrics:
        ok, why = m.applies_to(item.domain, bool(item.transcript))
        if not ok:
            skipped.append(SkippedRow(item.id, sel.key, sel.op.name, m.name, why))
        else:
            rows.append(ResultRow(item.id, sel.key, sel.op.name, m.name, sel.op.nominal_kbps,
                                  coded.measured_kbps if coded else None, float("nan"), "failed", reason))
    return rows, skipped


def build_manifest(cfg: RunConfig, ds: Dataset, split: str, items: list[Item], selections: list[Selection],
                   metrics: list[MetricSpec], cache_dir: str) -> dict[str, Any]:
    """The run manifest: command, settings, dataset protocol, codecs, metrics, versions, platform, seed."""
    from bench.datasets.base import item_list_hash

    try:
        from bench.datasets.protocol import protocol_manifest

        protocol = protocol_manifest(ds, split, items, limit=cfg.limit, seed=cfg.seed,
                                     loudness_lufs=cfg.loudness_lufs, channel_policy=cfg.channel_policy)
    except ImportError:
        protocol = {"dataset": ds.name, "split": split, "n_items": len(items), "item_list_sha256": item_list_hash(items)}
    codecs: dict[str, dict[str, Any]] = {}
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


@dataclass
class _Plan:
    """What a run will do: the dataset and split, its items, the codec selections, the metrics, where."""

    ds: Dataset
    split: str
    items: list[Item]
    selections: list[Selection]
    metrics: list[MetricSpec]
    run_dir: Path


def plan_run(cfg: RunConfig, say: Callable[[str], None] | None = None) -> _Plan:
    """Resolve the dataset, items, codecs and metrics of a run (no audio is touched yet)."""
    from bench.codecs.base import SkippedCodec, select_codecs
    from bench.datasets.base import resolve_dataset, select_items
    from bench.metrics.base import select_metrics

    ds, split = resolve_dataset(cfg.dataset, cfg.split, cfg.dataset_options)
    items = select_items(ds, split, cfg.root, item_ids=cfg.item_ids, limit=cfg.limit, seed=cfg.seed)
    if not items:
        raise UserError(f"dataset {ds.name}/{split} has no items")
    skipped: list[SkippedCodec] = []
    selections = select_codecs(cfg.codecs, skipped=skipped)
    if skipped:
        note = f"note: --codecs {cfg.codecs} skipped: {', '.join(str(s) for s in skipped)}"
        if say is not None:
            say(note)
        else:
            import warnings

            warnings.warn(note, stacklevel=2)
    metrics = select_metrics(cfg.metrics, say=say)
    run_dir = Path(cfg.out_dir) if cfg.out_dir else default_run_dir(ds.name, split)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} exists and is not a folder")
    return _Plan(ds, split, items, selections, metrics, run_dir)


def load_codecs(selections: list[Selection], device: str) -> tuple[dict[str, str], dict[str, str]]:
    """Load each selected codec once: (key -> fingerprint, key -> reason it could not be loaded)."""
    fingerprints: dict[str, str] = {}
    errors: dict[str, str] = {}
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

    def __init__(self, cfg: RunConfig, plan: _Plan, store: Store, run_id: str, cache: ReconCache) -> None:
        self.cfg, self.plan, self.store, self.run_id, self.cache = cfg, plan, store, run_id, cache
        self.done: set[tuple[str, str, str, str]] = set()  # filled after the identities are reconciled
        self.workers = cfg.workers or os.cpu_count() or 1
        self.pending: dict[cf.Future[dict[str, Any]], tuple[Item, Selection, CodedRow, list[MetricSpec]]] = {}
        self.codec_seen: set[str] = set()
        self.fingerprints: dict[str, str] = {}
        self.load_errors: dict[str, str] = {}
        from tqdm import tqdm

        self.bar = tqdm(total=len(plan.items) * len(plan.selections), unit="pair", disable=not cfg.progress,
                        dynamic_ncols=True, desc=f"{plan.ds.name}/{plan.split}")

    def executor(self) -> cf.Executor | InlineExecutor:
        """A spawn process pool (workers exit with this process) or, for one worker, inline scoring."""
        if self.workers <= 1:
            return InlineExecutor()
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                      initializer=_init_worker, initargs=(os.getpid(),))

    def fail_pair(self, item: Item, sel: Selection, metrics: list[MetricSpec], reason: str,
                  coded: CodedRow | None = None) -> None:
        """Record a pair that could not be coded or scored: NaN rows with the reason."""
        if coded is None:
            self.store.put_coded(self.run_id, CodedRow(item.id, sel.key, sel.op.name, sel.op.nominal_kbps,
                                                       status="failed", error=reason))
        rows, skipped = _failed_rows(item, sel, metrics, reason, coded)
        self.store.put_results(self.run_id, rows)
        self.store.put_skipped(self.run_id, skipped)

    def collect(self, fut: cf.Future[dict[str, Any]]) -> None:
        """Write the rows of one finished scoring task (a crashed task fails its pair only)."""
        item, sel, coded, need = self.pending.pop(fut)
        try:
            out = fut.result()
        except Exception as exc:  # noqa: BLE001 - a crashed worker fails this pair only
            self.fail_pair(item, sel, need, f"scoring crashed: {type(exc).__name__}: {exc}", coded)
        else:
            rows = [ResultRow(item.id, sel.key, sel.op.name, name, sel.op.nominal_kbps, coded.measured_kbps, v,
                              "ok" if err is None else "failed", err, extra)
                    for name, (v, err, extra) in out["values"].items()]
            skipped = [SkippedRow(item.id, sel.key, sel.op.name, name, reason) for name, reason in out["skipped"].items()]
            self.store.put_results(self.run_id, rows)
            self.store.put_skipped(self.run_id, skipped)
        self.bar.update(1)

    def drain(self, block_until: int) -> None:
        """Collect finished tasks until at most ``block_until`` are pending (bounds memory)."""
        while len(self.pending) > block_until:
            finished, _ = cf.wait(list(self.pending), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                self.collect(fut)

    def run_item(self, item: Item, executor: cf.Executor | InlineExecutor) -> None:
        """Prepare one item once and code it at every operating point that still has work."""
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
        item = replace(item, duration_s=item.duration_s or ref.shape[-1] / sr,
                       extra={**item.extra, "notes": notes} if notes else item.extra)
        self.store.put_items(self.run_id, [item], {item.id: ref.shape[-1] / sr})
        input_hash = array_hash(ref, sr)
        self.cache.ensure_reference(input_hash, ref, sr)  # the report plays it without the dataset
        for sel in self.plan.selections:
            need = todo[sel.label]
            if need:
                self.code_and_submit(item, sel, need, ref, sr, input_hash, executor)
            else:
                self.bar.update(1)

    def code_and_submit(self, item: Item, sel: Selection, need: list[MetricSpec], ref: np.ndarray, sr: int,
                        input_hash: str, executor: cf.Executor | InlineExecutor) -> None:
        """Code one pair through the cache and queue its scoring (a failure is recorded, the run goes on)."""
        if sel.key in self.load_errors:
            self.fail_pair(item, sel, need, self.load_errors[sel.key])
            self.bar.update(1)
            return
        try:
            recon, coded_fields = code_item(sel, ref, sr, input_hash, self.cache, self.cfg.device,
                                     self.fingerprints.get(sel.key))
        except Exception as exc:  # noqa: BLE001 - record and go on
            self.fail_pair(item, sel, need, f"{sel.label} failed on {item.path}: {type(exc).__name__}: {exc}")
            self.bar.update(1)
            return
        coded = CodedRow(item_id=item.id, **coded_fields)
        self.store.put_coded(self.run_id, coded)
        if sel.key not in self.codec_seen:
            self.codec_seen.add(sel.key)
            self.store.put_codec_info(self.run_id, sel.key, _codec_info(sel.codec))
        fut = executor.submit(score_task, ref, recon, sr, [m.name for m in need], item, self.cfg.align)
        self.pending[fut] = (item, sel, coded, need)
        self.drain(2 * self.workers)

    def execute(self) -> None:
        """Run every item; on any interruption the pool is shut down without waiting."""
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
    """Default notice printer: one line on stderr."""
    print(message, file=sys.stderr)


def run_benchmark(cfg: RunConfig, *, say: Callable[[str], None] = _say) -> Path:
    """Run (or resume) a benchmark; returns the run directory.

    Resume is keyed by everything that decides a value: a rerun with other value settings is
    refused (:class:`RunMismatchError`); rows whose item content, codec fingerprint or metric
    version and code changed are discarded and recomputed; the rest are kept.
    """
    from bench.cache import ReconCache
    from bench.store import Store

    plan = plan_run(cfg, say)
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


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (a reader never sees half a file)."""
    tmp = run_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, run_dir / "manifest.json")


def _codec_info(codec: Codec) -> dict[str, Any]:
    """Efficiency facts of a loaded codec (parameters, device, peak memory and how it was measured)."""
    import torch

    info: dict[str, Any] = {"name": codec.name, "checkpoint": codec.checkpoint, "checkpoint_hash": codec.checkpoint_hash,
                            "parameters": codec.num_parameters(), "device": str(codec.device),
                            "sample_rate_hz": codec.spec.sample_rate_hz}
    card = _card_summary(codec)
    if card:
        info["card"] = card  # provenance for reports: which checkpoint this was, where it came from
    if codec.device.type == "cuda":
        info["peak_memory_mb"] = torch.cuda.max_memory_allocated(codec.device) / 2**20
        info["peak_memory_kind"] = "torch.cuda.max_memory_allocated (process-wide)"
    else:
        info["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        info["peak_memory_kind"] = "process peak RSS (ru_maxrss), all codecs of the run together"
    return info


def _card_summary(codec: Codec) -> dict[str, Any] | None:
    """Name, config and training facts of a checkpoint codec's card(s) (several joined with '+'), else None."""
    cards_of = getattr(codec, "cards", None)
    if cards_of is None:
        return None
    try:
        cards = [card for _, card in cards_of.values()]
    except Exception:  # noqa: BLE001 - provenance is best effort; the run itself already loaded the codec
        return None

    def joined(key: str) -> Any:
        values = [str(c.get(key)) for c in cards if c.get(key) is not None]
        return "+".join(values) if values else None

    training = cards[0].get("training", {}) if len(cards) == 1 and isinstance(cards[0].get("training"), dict) else {}
    return {"name": joined("name"), "config_name": joined("config_name"),
            "training": {k: training.get(k) for k in ("steps", "device", "data")}}
