"""``bench run``'s engine: encode, serialise, deserialise, decode and score a dataset with codecs.

Items are read and hashed a window ahead (a reader thread); each window of items goes to the engine
as one codec job per codec, coded in batches over items with every operating point of a model
sharing one encode (``bench.pipeline.code``, ``bench.pipeline.batching``), and every coded pair is
scored as soon as its job returns, while the next window is being coded (``bench.pipeline.engine``;
``--engine ray`` spreads the same work over a cluster). This process is the only writer of the
results. Results go to ``RUN_DIR/results.sqlite`` (see
``bench.store``). A killed run resumes on the same command: rows are keyed by (run, item, codec,
operating point, metric) and written as each pair finishes, finished pairs are skipped, and the
reconstruction cache makes partially finished pairs cheap; rows computed from other inputs are
discarded first (``bench.pipeline.identity``). An item that fails (unreadable file, codec error,
NaN output) is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.codecs.base import Codec, Selection
    from bench.datasets.base import Dataset, Item
    from bench.metrics.base import MetricSpec
    from bench.store import Store


from bench.errors import UserError
from bench.pipeline.code import CodeJob, CodeOutcome, ItemError, PreparedRef, prepare_reference
from bench.pipeline.engine import Engine, LocalEngine
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
    for m in (m for m in metrics if not m.set_level):  # set-level metrics have no per-item rows
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
        "metrics": {m.name: _metric_manifest(m) for m in metrics},
        "versions": library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "cache_dir": cache_dir,
        "seed": cfg.seed,
    }


def _metric_manifest(spec: MetricSpec) -> dict[str, Any]:
    """A metric's manifest entry: version, source, rate, direction, unit, and its model (weights hash) if any."""
    from bench.metrics.base import describe_model

    entry: dict[str, Any] = {"version": spec.version, "source": spec.source, "sample_rate_hz": spec.sample_rate_hz,
                             "higher_is_better": spec.higher_is_better, "unit": spec.unit,
                             "display_name": spec.display_name}
    model = describe_model(spec)
    if model is not None:
        entry["model"] = model
    return entry


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


#: how many items, and how many seconds of audio, one codec job holds (batches form within a job)
WINDOW_ITEMS = {"cpu": 16, "cuda": 64}
WINDOW_AUDIO_S = {"cpu": 240.0, "cuda": 1800.0}


def make_engine(cfg: RunConfig, workers: int) -> Engine:
    """The engine ``--engine`` names: ``local`` (this machine) or ``ray`` (a Ray cluster, an extra)."""
    if cfg.engine == "local":
        return LocalEngine(workers)
    if cfg.engine == "ray":
        from bench.pipeline.ray_engine import RayEngine

        return RayEngine(workers, address=cfg.address, device=cfg.device)
    raise UserError(f"unknown engine {cfg.engine!r} (choose local or ray)")


def device_metrics(metrics: list[MetricSpec], device: str) -> list[str]:
    """The metrics scored inside each codec job on the codec's device: the torch ones, on a GPU.

    On the CPU every metric goes to the pool instead, which spreads them over the cores.
    """
    return [m.name for m in metrics if m.on_device] if device == "cuda" else []


@dataclass
class _Window:
    """Items prepared together (their codec jobs form batches): item, reference or the reason it failed."""

    entries: list[tuple[Item, PreparedRef | None, str | None]]


class _Run:
    """One execution of a plan against a store: windows of items, codec jobs, scoring, the counters.

    The driver (this object, in the calling thread) is the single writer of the store. Items are
    read and hashed one window ahead in a thread; each window's codec work goes to the engine as one
    job per codec; each coded pair's scoring is queued as soon as its job returns.
    """

    def __init__(self, cfg: RunConfig, plan: _Plan, store: Store, run_id: str, cache: ReconCache,
                 engine: Engine) -> None:
        self.cfg, self.plan, self.store, self.run_id, self.cache, self.engine = cfg, plan, store, run_id, cache, engine
        self.done: set[tuple[str, str, str, str]] = set()  # filled after the identities are reconciled
        self.score_pending: dict[cf.Future[dict[str, Any]], tuple[Item, Selection, CodedRow, list[MetricSpec]]] = {}
        self.code_pending: dict[cf.Future[list[CodeOutcome]],
                                tuple[str, dict[str, Item], dict[str, PreparedRef]]] = {}
        self.codec_seen: set[str] = set()
        self.codec_memory: dict[str, dict[str, Any]] = {}  # codec key -> its largest job's memory figure
        self.load_errors: dict[str, str] = {}
        self.coded: set[tuple[str, str, str]] = set()  # (item, codec, op) with a coded row: set-level metrics' resume set
        self.by_label = {(sel.key, sel.op.name): sel for sel in plan.selections}
        device = "cuda" if cfg.device.startswith("cuda") else "cpu"
        self.window_items, self.window_audio_s = WINDOW_ITEMS[device], WINDOW_AUDIO_S[device]
        self.device_metrics = device_metrics(plan.metrics, device)
        from tqdm import tqdm

        self.bar = tqdm(total=len(plan.items) * len(plan.selections), unit="pair", disable=not cfg.progress,
                        dynamic_ncols=True, desc=f"{plan.ds.name}/{plan.split}")

    # --- what is left to do ----------------------------------------------------------------------
    def todo(self, item: Item) -> dict[str, list[MetricSpec]]:
        """Selection label -> the metrics of that pair not yet in the store."""
        return {sel.label: [m for m in self.plan.metrics  # a set-level metric (bench.pipeline.set_level) needs the pair coded
                            if ((item.id, sel.key, sel.op.name) not in self.coded if m.set_level
                                else (item.id, sel.key, sel.op.name, m.name) not in self.done)]
                for sel in self.plan.selections}

    def windows(self) -> Iterator[list[Item]]:
        """The plan's items that still have work, in windows of at most ``window_items`` items / ``window_audio_s``."""
        window: list[Item] = []
        seconds = 0.0
        for item in self.plan.items:
            if not any(self.todo(item).values()):
                self.bar.update(len(self.plan.selections))
                continue
            window.append(item)
            seconds += item.duration_s or 0.0
            if len(window) >= self.window_items or seconds >= self.window_audio_s:
                yield window
                window, seconds = [], 0.0
        if window:
            yield window

    def prepare(self, items: list[Item]) -> _Window:
        """Load, apply the channel/loudness policy and hash each item of a window (runs in the reader thread)."""
        from bench.audio import array_hash

        entries: list[tuple[Item, PreparedRef | None, str | None]] = []
        for item in items:
            try:
                ref, sr, notes = prepare_reference(item, self.cfg)
            except ItemError as exc:
                entries.append((item, None, str(exc)))
                continue
            item = replace(item, duration_s=item.duration_s or ref.shape[-1] / sr,
                           extra={**item.extra, "notes": notes} if notes else item.extra)
            entries.append((item, PreparedRef(item.id, str(item.path), ref, sr, array_hash(ref, sr), item), None))
        return _Window(entries)

    # --- recording -------------------------------------------------------------------------------
    def fail_pair(self, item: Item, sel: Selection, metrics: list[MetricSpec], reason: str,
                  coded: CodedRow | None = None) -> None:
        """Record a pair that could not be coded or scored: NaN rows with the reason."""
        if coded is None:
            self.store.put_coded(self.run_id, CodedRow(item.id, sel.key, sel.op.name, sel.op.nominal_kbps,
                                                       status="failed", error=reason))
        rows, skipped = _failed_rows(item, sel, metrics, reason, coded)
        self.store.put_results(self.run_id, rows)
        self.store.put_skipped(self.run_id, skipped)

    def collect_score(self, fut: cf.Future[dict[str, Any]]) -> None:
        """Write the rows of one finished scoring task (a crashed task fails its pair only)."""
        item, sel, coded, need = self.score_pending.pop(fut)
        try:
            out = fut.result()
        except Exception as exc:  # noqa: BLE001 - a crashed worker fails this pair only
            self.fail_pair(item, sel, need, f"scoring crashed: {type(exc).__name__}: {exc}", coded)
        else:
            self.write_scores(item, sel, coded, out)
        self.bar.update(1)

    def write_scores(self, item: Item, sel: Selection, coded: CodedRow, out: dict[str, Any]) -> None:
        """Write one pair's scored values and not-applicable rows (``score_task``'s plain data)."""
        rows = [ResultRow(item.id, sel.key, sel.op.name, name, coded.nominal_kbps, coded.measured_kbps,
                          v[0], "ok" if v[1] is None else "failed", v[1], v[2], compute_s=v[3])
                for name, v in out["values"].items()]
        skipped = [SkippedRow(item.id, sel.key, sel.op.name, name, reason) for name, reason in out["skipped"].items()]
        self.store.put_results(self.run_id, rows)
        self.store.put_skipped(self.run_id, skipped)

    def collect_code(self, fut: cf.Future[list[CodeOutcome]]) -> None:
        """Record one finished codec job's pairs and queue each coded pair's scoring."""
        key, items, refs = self.code_pending.pop(fut)
        try:
            outcomes = fut.result()
        except Exception as exc:  # noqa: BLE001 - the whole job failed (a dead worker after its retries)
            reason = f"{key}: codec work failed: {type(exc).__name__}: {exc}"
            outcomes = [CodeOutcome(item_id, sel.op.name, error=reason) for item_id in items
                        for sel in self.plan.selections if sel.key == key and self.todo(items[item_id])[sel.label]]
        for outcome in outcomes:
            item, sel = items[outcome.item_id], self.by_label[(key, outcome.op)]
            need = self.todo(item)[sel.label]
            if outcome.error is not None or outcome.recon is None:
                self.fail_pair(item, sel, need, outcome.error or "no reconstruction")
                self.bar.update(1)
                continue
            coded = CodedRow(item_id=item.id, **{"nominal_kbps": sel.op.nominal_kbps, **outcome.row})
            self.store.put_coded(self.run_id, coded)
            self.note_memory(key, outcome.memory)
            if key not in self.codec_seen:
                self.codec_seen.add(key)
                self.store.put_codec_info(self.run_id, key, _codec_info(sel.codec, self.codec_memory.get(key)))
            if outcome.scores is not None:  # the device metrics, scored where the codec ran
                wanted = {m.name for m in need}
                self.write_scores(item, sel, coded, {
                    "values": {k: v for k, v in outcome.scores["values"].items() if k in wanted},
                    "skipped": {k: v for k, v in outcome.scores["skipped"].items() if k in wanted}})
                need = [m for m in need if m.name not in self.device_metrics]
            need = [m for m in need if not m.set_level]
            if not need:
                self.bar.update(1)
                continue
            ref = refs[item.id]
            fut_s = self.engine.score(ref.audio, outcome.recon, ref.sample_rate_hz, [m.name for m in need], item,
                                      self.cfg.align)
            self.score_pending[fut_s] = (item, sel, coded, need)
            if fut_s.done():  # scored inline (one worker): write its rows now, pair by pair
                self.collect_score(fut_s)

    def wait(self, max_code: int, max_score: int) -> None:
        """Collect finished work until at most ``max_code`` jobs and ``max_score`` scorings are pending."""
        while len(self.code_pending) > max_code or len(self.score_pending) > max_score:
            futures: list[cf.Future[Any]] = [*self.code_pending, *self.score_pending]
            finished, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                if f in self.code_pending:
                    self.collect_code(f)
                else:
                    self.collect_score(f)

    # --- the loop --------------------------------------------------------------------------------
    def submit_window(self, window: _Window) -> None:
        """Record a window's items, fail the unreadable ones, and queue one codec job per codec."""
        ok = [(item, ref) for item, ref, _ in window.entries if ref is not None]
        self.store.put_items(self.run_id, [item for item, _ in ok],
                             {item.id: ref.audio.shape[-1] / ref.sample_rate_hz for item, ref in ok})
        for item, ref, why in window.entries:
            if ref is None:
                for sel in self.plan.selections:
                    if self.todo(item)[sel.label]:
                        self.fail_pair(item, sel, self.todo(item)[sel.label], str(why))
                    self.bar.update(1)
        for key in dict.fromkeys(sel.key for sel in self.plan.selections):
            self.submit_codec(key, ok)

    def submit_codec(self, key: str, ok: list[tuple[Item, PreparedRef]]) -> None:
        """Queue one codec's job over a window (pairs already done or a codec that failed to load are settled here)."""
        ops: dict[str, list[str]] = {}
        for item, _ in ok:
            todo = self.todo(item)
            for sel in (s for s in self.plan.selections if s.key == key):
                if not todo[sel.label]:
                    self.bar.update(1)
                elif key in self.load_errors:
                    self.fail_pair(item, sel, todo[sel.label], self.load_errors[key])
                    self.bar.update(1)
                else:
                    ops.setdefault(item.id, []).append(sel.op.name)
        if ops:
            job = CodeJob(key, [ref for item, ref in ok if item.id in ops], ops,
                          device_metrics=list(self.device_metrics), align=self.cfg.align)
            self.code_pending[self.engine.code(job)] = (key, {item.id: item for item, _ in ok},
                                                        {item.id: ref for item, ref in ok})

    def execute(self) -> None:
        """Run every window; on any interruption the engine is shut down without waiting."""
        n_codecs = len({sel.key for sel in self.plan.selections})
        reader = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-reader")
        try:
            ahead: cf.Future[_Window] | None = None
            for items in self.windows():
                current = reader.submit(self.prepare, items)
                if ahead is not None:
                    self.submit_window(ahead.result())
                    self.wait(max_code=n_codecs, max_score=4 * self.engine.workers)
                ahead = current
            if ahead is not None:
                self.submit_window(ahead.result())
            self.wait(0, 0)
        except BaseException:
            reader.shutdown(wait=False, cancel_futures=True)
            self.engine.shutdown(cancel=True)
            self.bar.close()
            raise
        reader.shutdown()
        self.engine.shutdown()
        self.bar.close()
        for key in self.codec_seen:
            sel = next(s for s in self.plan.selections if s.key == key)
            self.store.put_codec_info(self.run_id, key, _codec_info(sel.codec, self.codec_memory.get(key)))

    def note_memory(self, key: str, memory: dict[str, Any] | None) -> None:
        """Keep the largest per-job memory figure of codec ``key`` (jobs answered from the cache have none)."""
        if memory is None or memory.get("peak_memory_mb") is None:
            return
        best = self.codec_memory.get(key)
        if best is None or memory["peak_memory_mb"] > best["peak_memory_mb"]:
            self.codec_memory[key] = dict(memory)


def _say(message: str) -> None:
    """Default notice printer: one line on stderr."""
    print(message, file=sys.stderr)


def run_benchmark(cfg: RunConfig, *, say: Callable[[str], None] = _say,
                  manifest_extra: dict[str, Any] | None = None) -> Path:
    """Run (or resume) a benchmark; returns the run directory.

    ``manifest_extra`` adds keys to the run manifest (e.g. ``{"sweep": {"path": ..., "sha256": ...,
    "text": ...}}`` for a run started from a sweep file); it is written on every resume too.

    Resume is keyed by everything that decides a value: a rerun with other value settings is
    refused (:class:`RunMismatchError`); rows whose item content, codec fingerprint or metric
    version and code changed are discarded and recomputed; the rest are kept.
    """
    from bench.cache import ReconCache
    from bench.devices import resolve_device
    from bench.store import Store

    cfg = replace(cfg, device=resolve_device(cfg.device))
    plan = plan_run(cfg, say)
    cache = ReconCache(cfg.cache_dir, refresh=cfg.refresh)
    run_id = plan.run_dir.resolve().name
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with Store(plan.run_dir / "results.sqlite") as store:
        current = value_settings(cfg, plan.ds, plan.split)
        check_same_settings(store, run_id, plan.run_dir, current)
        engine = make_engine(cfg, cfg.workers or os.cpu_count() or 1)
        try:
            fingerprints, load_errors = engine.start(plan.selections, cfg.device, cache)
        except BaseException:
            engine.shutdown(cancel=True)
            raise
        run = _Run(cfg, plan, store, run_id, cache, engine)
        run.load_errors = load_errors
        run.codec_memory = _stored_memory(store, run_id)  # a resumed run keeps the figures of what it coded before
        codec_ids = dict(fingerprints, **{k: "unloadable" for k in load_errors})
        reconcile(store, run_id, "codec", codec_ids, say=say)
        reconcile(store, run_id, "metric", metric_identities(plan.metrics), say=say)
        reconcile(store, run_id, "item", {it.id: item_fingerprint(it) for it in plan.items}, say=say)
        run.done = set() if cfg.refresh else store.done_results(run_id)
        run.coded = set() if cfg.refresh else {(r["item_id"], r["codec"], r["op"]) for r in store.coded_rows(run_id)}
        manifest = build_manifest(cfg, plan.ds, plan.split, plan.items, plan.selections, plan.metrics, str(cache.root))
        manifest.update(manifest_extra or {})
        manifest.update(value_settings=current, codec_fingerprints=codec_ids,
                        started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        store.put_run(run_id, manifest)
        store.put_items(run_id, plan.items)
        _write_manifest(plan.run_dir, manifest)
        run.execute()
        from bench.pipeline.set_level import run_set_level  # set-level metrics (FAD) over the coded pairs

        manifest["set_level"] = run_set_level(cfg, plan, store, run_id, cache, say=say)
        if cache.problems:
            say(f"note: {len(cache.problems)} damaged cache entr{'y' if len(cache.problems) == 1 else 'ies'} "
                f"recomputed ({cache.problems[0]}{' ...' if len(cache.problems) > 1 else ''})")
        manifest["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["timing"] = {"wall_s": time.perf_counter() - t0, "cores": os.cpu_count() or 1, **engine.describe()}
        manifest["counts"] = {t: store.count(t, run_id) for t in ("results", "skipped", "coded")}
        manifest["cache_problems"] = cache.problems
        store.put_run(run_id, manifest)
        _write_manifest(plan.run_dir, manifest)
    return plan.run_dir


def _stored_memory(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """codec key -> the peak memory figure an earlier session of this run measured (for resumed runs)."""
    out: dict[str, dict[str, Any]] = {}
    for codec, text in store.conn.execute("SELECT codec, info FROM codec_info WHERE run_id=?", (run_id,)):
        try:
            info = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(info.get("peak_memory_mb"), (int, float)) and info.get("peak_memory_kind"):
            out[codec] = {"peak_memory_mb": info["peak_memory_mb"], "memory_kind": info["peak_memory_kind"]}
    return out


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (a reader never sees half a file)."""
    tmp = run_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, run_dir / "manifest.json")


def _codec_info(codec: Codec, memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """Efficiency facts of a loaded codec: parameters, device, its own peak memory and how it was measured.

    ``memory`` is the largest coding job's figure (bench.pipeline.memory); without one (every pair came
    from the cache) the peak memory is not measured, never the process's figure passed off as the codec's.
    """
    info: dict[str, Any] = {"name": codec.name, "checkpoint": codec.checkpoint, "checkpoint_hash": codec.checkpoint_hash,
                            "parameters": codec.num_parameters(), "device": str(codec.device),
                            "sample_rate_hz": codec.spec.sample_rate_hz}
    card = _card_summary(codec)
    if card:
        info["card"] = card  # provenance for reports: which checkpoint this was, where it came from
    if memory is not None:
        info["peak_memory_mb"] = memory["peak_memory_mb"]
        info["peak_memory_kind"] = memory["memory_kind"]
    else:
        info["peak_memory_mb"] = None
        info["peak_memory_kind"] = "not measured (no pair of this codec was coded in this run: all from the cache)"
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
