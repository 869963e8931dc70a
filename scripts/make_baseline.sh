#!/usr/bin/env bash
# Save, or check against, the committed baseline of the shipped checkpoints on the demo set.
#
#   scripts/make_baseline.sh save  [BASELINE]   # run the shipped codecs, write BASELINE (commit it)
#   scripts/make_baseline.sh check [BASELINE]   # run them again and gate the run against BASELINE
#
# BASELINE defaults to ci/baseline-demo.json. Environment overrides:
#   CODECS   codec selection (default: the in-repo neural codecs with shipped checkpoints)
#   METRICS  metrics to store and gate on (default: si_sdr,mel_distance,stft_distance)
#   MARGIN   allowed degradation for `check` (default 1%: of the baseline mean, per metric)
#   RUN_DIR  where the run goes (default runs/baseline-demo or runs/check-demo)
# `check` exits 0 on pass, 1 on a regression, 2 on an error, like `bench gate`.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-save}"
baseline="${2:-ci/baseline-demo.json}"
codecs="${CODECS:-dac,vrvq,eulerodec}"
metrics="${METRICS:-si_sdr,mel_distance,stft_distance}"
margin="${MARGIN:-1%}"

case "$action" in
  save)
    run="${RUN_DIR:-runs/baseline-demo}"
    bench run --codecs "$codecs" --dataset demo --metrics "$metrics" --out "$run" --no-progress
    mkdir -p "$(dirname "$baseline")"
    bench baseline save "$run" --out "$baseline"
    ;;
  check)
    run="${RUN_DIR:-runs/check-demo}"
    # a fresh run and a private reconstruction cache: a cached decode would hide a change in model code
    rm -rf "$run"
    bench run --codecs "$codecs" --dataset demo --metrics "$metrics" --out "$run" --cache-dir "$run/.cache" --no-progress
    mkdir -p "$run/gate"
    bench gate --baseline "$baseline" --candidate "$run" --margin "$margin" \
      --json "$run/gate/verdict.json" --markdown "$run/gate/summary.md"
    ;;
  *)
    echo "usage: $0 save|check [BASELINE]" >&2
    exit 2
    ;;
esac
