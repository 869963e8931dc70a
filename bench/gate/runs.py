"""Reading a run for the gate, read-only: its per-item values, errors and measured kbps.

The baseline (when it is saved) and a run-directory candidate (when it is gated) are read the
same way, so both sides of a comparison mean the same thing by a value, an error and a rate.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from bench.errors import one_line
from bench.gate.common import GateError, finite_or_none, str_or_none


def load_gate_run(run_dir: str | Path, run_id: str | None = None) -> Any:
    """One run, read by ``bench.reports.load.load_run`` (a read-only Store: it changes nothing on disk).

    A missing run, a file that is not a results database (or lacks one of its tables) and an
    unknown run id are UserErrors there already; a database damaged in another way (a table with
    other columns) fails inside SQLite or pandas, and is one here too.
    """
    import pandas as pd

    from bench.reports.load import load_run

    try:
        return load_run(run_dir, run_id)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise GateError(f"{run_dir}: not a readable bench results database ({one_line(exc)})") from None


def checkpoint_hash(data: Any, codec: str) -> str | None:
    """The checkpoint hash a run recorded for a codec key (None when it recorded none)."""
    info = data.codec_info.get(codec)
    return str_or_none(info.get("checkpoint_hash")) if isinstance(info, dict) else None


def entry_scores(g: Any, coded: Any) -> dict[str, Any]:
    """Per-item values, errors and measured kbps of one (codec, op) group of results rows.

    ``coded`` holds the group's encode/decode rows; when it has none, the rate comes from the
    results rows (one per item).
    """
    values: dict[str, dict[str, float | None]] = {}
    errors: dict[str, dict[str, str]] = {}
    for r in g.itertuples():
        v = finite_or_none(r.value) if r.status == "ok" else None
        values.setdefault(r.metric, {})[r.item_id] = v
        if v is None:
            errors.setdefault(r.metric, {})[r.item_id] = str(r.error or "no value")
    kbps = {r.item_id: finite_or_none(r.measured_kbps) for r in coded.itertuples()}
    if not kbps:
        kbps = {r.item_id: finite_or_none(r.measured_kbps) for r in g.drop_duplicates("item_id").itertuples()}
    return {"values": values, "errors": errors, "measured_kbps": kbps}
