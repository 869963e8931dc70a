"""The programmatic gate: a baseline file and a candidate path in, a verdict out.

Every option and the baseline are checked before a checkpoint candidate is run, so a mistake
costs no benchmark run; a run-directory candidate is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.gate.baseline import load_baseline
from bench.gate.candidate import candidate_kind, candidate_values, check_codec, run_candidate
from bench.gate.decision import evaluate, gated_metrics, parse_margins
from bench.gate.options import DEFAULT_BOOTSTRAP, DEFAULT_CONFIDENCE, DEFAULT_KBPS_TOLERANCE, check_options


def gate(baseline_path: str | Path, candidate: str, *, codec: str | None = None, metrics: list[str] | None = None,
         margin: str | None = None, confidence: float = DEFAULT_CONFIDENCE, strict: bool = False,
         kbps_tolerance: float = DEFAULT_KBPS_TOLERANCE, out_dir: str | Path | None = None,
         n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, run_fn: Callable[[Any], Path] | None = None,
         config_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Programmatic gate; returns the verdict dict (``verdict["exit_code"]`` is the process exit code).

    Everything about the baseline and the options is checked before a checkpoint is run.
    """
    check_options(confidence, kbps_tolerance, n_boot, seed)
    baseline = load_baseline(baseline_path)
    parse_margins(margin, gated_metrics(baseline, metrics))
    check_codec(baseline, codec)
    path = Path(candidate)
    source = candidate_kind(path)
    if source == "run":
        run_dir = path
    else:
        run_dir = run_candidate(baseline, str(path.resolve()), codec=codec, out_dir=out_dir, metrics=metrics,
                                run_fn=run_fn, config_overrides=config_overrides)
    cand, mapping = candidate_values(run_dir, baseline, codec=codec if source == "run" else None)
    verdict = evaluate(baseline, cand, metrics=metrics, margin=margin, confidence=confidence,
                       kbps_tolerance=kbps_tolerance, strict=strict, n_boot=n_boot, seed=seed)
    verdict.update(baseline=str(Path(baseline_path).resolve()), candidate=str(path.resolve()),
                   candidate_kind=source, candidate_run=str(Path(run_dir).resolve()), codec_mapping=mapping)
    return verdict
