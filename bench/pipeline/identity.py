"""Resume keyed by everything that decides a value.

* Run-level value settings (dataset, split, dataset options, channel policy, loudness, alignment):
  a rerun into a run directory with other values is refused (:class:`RunMismatchError`).
* Per row: the item's content hash, the codec's fingerprint and the metric's fingerprint are
  stored in the ``identities`` table; rows whose inputs changed are discarded and recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from bench.datasets.base import Dataset, Item
    from bench.metrics.base import MetricSpec
    from bench.store import Store

from bench.errors import UserError
from bench.types import RunConfig

#: settings that decide values for every row: a rerun into the same run directory with other
#: values is refused (it would mix results computed two ways under one manifest)
VALUE_SETTINGS = ("dataset", "split", "dataset_options", "channel_policy", "loudness_lufs", "align")


class RunMismatchError(UserError):
    """A rerun into a run directory whose results were computed under other settings."""


def value_settings(cfg: RunConfig, ds: Dataset, split: str) -> dict[str, Any]:
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


def check_same_settings(store: Store, run_id: str, run_dir: Path, current: dict[str, Any]) -> None:
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


def item_fingerprint(item: Item) -> str:
    """Hash of what decides an item's values: its file's bytes, the excerpt, its transcript and domain."""
    from bench.codecs.base import file_sha256
    from bench.fingerprint import digest

    try:
        content = file_sha256(item.path)
    except OSError as exc:
        content = f"unreadable: {exc.strerror or exc}"
    return digest([content, item.start_s, item.duration_s, item.extra.get("stream_index", 0),
                   item.transcript, item.domain], length=24)


def reconcile(store: Store, run_id: str, kind: str, current: dict[str, str], *, say: Callable[[str], None]) -> None:
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


def metric_identities(metrics: list[MetricSpec]) -> dict[str, str]:
    """name -> fingerprint of each metric (version, code, backend versions)."""
    from bench.metrics.base import metric_fingerprint

    return {m.name: metric_fingerprint(m) for m in metrics}
