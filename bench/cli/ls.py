"""``bench ls codecs|metrics|datasets``: what is registered, with the facts a user picks by.

Entries that a plugin registered (``--plugin``, ``$BENCH_PLUGINS`` or an installed entry point;
loaded by ``bench.cli.main`` before this runs) end with ``[plugin NAME]``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bench.registry import CODECS, DATASETS, METRICS, Registry

if TYPE_CHECKING:
    from bench.codecs.base import CodecSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``bench ls`` takes the registry to list."""
    p.add_argument("what", choices=["codecs", "metrics", "datasets"], help="which registry to list")


def _from(registry: Registry, name: str) -> str:
    """'  [plugin NAME]' for an entry a plugin registered, '' for bench's own."""
    origin = registry.origin(name)
    return f"  [plugin {origin}]" if origin else ""


def _yes_no(reason: str | None) -> str:
    """'yes', or 'no (reason)' for a backend or weights that are missing."""
    return "yes" if reason is None else f"no ({reason})"


def _points(spec: CodecSpec) -> str:
    """Every operating point as ``NAME (KBPS)``, the default sweep's marked ``NAME (KBPS)*``."""
    return ", ".join(f"{p.name} ({p.nominal_kbps:g}){'*' if spec.sweep is None or p.name in spec.sweep else ''}"
                     for p in spec.operating_points)


def _ls_codecs() -> None:
    """One line per codec: rate, channels, operating points (default sweep starred), backend and weights."""
    from bench.codecs.base import codec_availability

    print(f"{'codec':<12} {'rate':>7} {'ch':>3}  operating points (nominal kbps; * = default sweep); sweep; backend; weights")
    for name, factory in CODECS.items():
        availability = codec_availability(name)
        status = f"backend {_yes_no(availability.backend)}; weights {_yes_no(availability.weights)}"
        try:
            spec = factory().spec
        except Exception as exc:  # noqa: BLE001 - a missing checkpoint must not hide the rest
            detail = status if not availability.ok else f"{exc}; {status}"
            print(f"{name:<12} unavailable: {detail}{_from(CODECS, name)}")
            continue
        sweep = " ".join(p.name for p in spec.operating_points if spec.sweep is None or p.name in spec.sweep)
        print(f"{name:<12} {spec.sample_rate_hz:>7} {spec.channels:>3}  {_points(spec)}; sweep {sweep}; {status}"
              f"{_from(CODECS, name)}")
    print("* = the default sweep: the points '--codecs all' or a bare NAME runs; NAME@OP picks one point, "
          "NAME@* every point")


def _ls_metrics() -> None:
    print(f"{'metric':<16} {'better':<7} {'rate':>6} {'unit':<8} domains")
    for name, spec in METRICS.items():
        better = "higher" if spec.higher_is_better else "lower"
        rate = spec.sample_rate_hz or "any"
        print(f"{name:<16} {better:<7} {rate:>6} {spec.unit:<8} {','.join(spec.domains)}{_from(METRICS, name)}")


def _ls_datasets() -> None:
    print(f"{'dataset':<10} {'default split':<16} splits")
    for name, ds in DATASETS.items():
        print(f"{name:<10} {ds.default_split:<16} {', '.join(ds.splits)}{_from(DATASETS, name)}")


def main(args: argparse.Namespace) -> int:
    """Print the chosen registry, one line per entry."""
    {"codecs": _ls_codecs, "metrics": _ls_metrics, "datasets": _ls_datasets}[args.what]()
    return 0
