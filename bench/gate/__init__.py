"""The checkpoint gate: a candidate checkpoint or run against a saved baseline, as an exit code.

``bench baseline save RUN_DIR --out baseline.json`` (:func:`make_baseline`) stores, for every
(codec, operating point) of a run, the per-item metric values and measured kbps, with the item
list (ids, clusters), the metric directions and the run's settings, so a candidate can be
evaluated on exactly the same items later.

``bench gate --baseline baseline.json --candidate CHECKPOINT_OR_RUN`` (:func:`gate`) gets the
candidate's per-item values (from a run directory, or by running the benchmark on the baseline's
items with the checkpoint in place of the baseline's: ``NAME:CHECKPOINT@OP`` for each of its
operating points; the reconstruction cache makes reruns cheap) and decides per metric and
operating point by non-inferiority on the paired per-item differences, oriented so that positive
means better:

* ``regression`` (gate fails): the one-sided upper confidence bound of the mean difference is
  below ``-margin``: the candidate is worse by more than the margin, with confidence;
* ``pass``: the one-sided lower bound is above ``-margin``: not worse than the margin, with confidence;
* ``inconclusive``: neither; passes by default (too few items to tell), fails with ``--strict``.

Bounds are cluster-bootstrap percentiles (speakers/tracks resampled as units). Items the
baseline scored but the candidate failed on count as regressions of their own (a candidate that
fails on every item is a regression, not an error); a candidate that spends more bits than the
baseline (beyond ``--kbps-tolerance``) fails too, since a quality comparison at a higher rate
proves nothing.

Both commands only read results databases (``bench.reports.load.load_run`` opens them with
``Store(readonly=True)``), so they work on a read-only filesystem. A baseline is validated as a
whole when it is loaded.

Exit codes: 0 pass, 1 regression, 2 error (a user's mistake or an undecidable comparison: one
line on stderr). Writes a JSON verdict and a short markdown summary.

Parts: :mod:`.baseline` (make, validate, load), :mod:`.candidate` (run or read a candidate),
:mod:`.decision` (margins, per-check statistics, the verdict), :mod:`.render` (JSON, markdown),
:mod:`.options` (option defaults and ranges), :mod:`.compare` (:func:`gate`, end to end). The
command line is ``bench.cli.gate``.
"""

from __future__ import annotations

from bench.errors import EXIT_REGRESSION
from bench.gate.baseline import BASELINE_FORMAT, BASELINE_VERSION, load_baseline, make_baseline, validate_baseline
from bench.gate.candidate import candidate_spec, candidate_values, is_run_dir, run_candidate
from bench.gate.common import GateError
from bench.gate.compare import gate
from bench.gate.decision import (
    EXIT_ERROR,
    EXIT_PASS,
    error_verdict,
    evaluate,
    gated_metrics,
    margin_tokens,
    parse_margins,
)
from bench.gate.options import (
    BOOTSTRAP,
    CONFIDENCE,
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_KBPS_TOLERANCE,
    DEFAULT_MARGIN,
    KBPS_TOLERANCE,
    MAX_BOOTSTRAP,
    SEED,
    NumberRange,
    check_options,
)
from bench.gate.render import json_safe, markdown_summary, write_outputs

__all__ = [
    "BASELINE_FORMAT", "BASELINE_VERSION", "BOOTSTRAP", "CONFIDENCE", "DEFAULT_BOOTSTRAP", "DEFAULT_CONFIDENCE",
    "DEFAULT_KBPS_TOLERANCE", "DEFAULT_MARGIN", "EXIT_ERROR", "EXIT_PASS", "EXIT_REGRESSION", "KBPS_TOLERANCE",
    "MAX_BOOTSTRAP", "SEED", "GateError", "NumberRange", "candidate_spec", "candidate_values", "check_options",
    "error_verdict", "evaluate", "gate", "gated_metrics", "is_run_dir", "json_safe", "load_baseline",
    "make_baseline", "margin_tokens", "markdown_summary", "parse_margins", "run_candidate", "validate_baseline",
    "write_outputs",
]
