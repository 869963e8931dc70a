"""``bench weights fetch HUB_ID``, ``bench weights ls``, ``bench weights convert RELEASE.pth``: published weights.

``fetch`` is the one command that downloads weights: through ``huggingface_hub`` into the local
Hugging Face cache, JSON and safetensors files only. Every other command reads that cache offline.
``ls`` says, for each published codec, whether its default weights are in the cache.
"""

from __future__ import annotations

import argparse

from bench.cli.args import existing_file, int_range, writable_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``fetch HUB_ID [--revision R]`` or ``ls``."""
    sub = p.add_subparsers(dest="weights_action", metavar="ACTION", required=True)
    fetch = sub.add_parser("fetch", help="download a hub model (safetensors only) into the Hugging Face cache")
    fetch.add_argument("hub_id", help="OWNER/NAME, e.g. facebook/encodec_24khz")
    fetch.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    sub.add_parser("ls", help="which published codecs' weights are in the local cache")
    convert = sub.add_parser("convert", help="convert an original DAC or VRVQ release (.pth) into a bench checkpoint")
    convert.add_argument("release", type=existing_file, help="the release's weights file, e.g. weights_44khz_8kbps_0.0.1.pth")
    convert.add_argument("--out", required=True, type=writable_file, help="the .safetensors to write (its card goes beside it)")
    convert.add_argument("--sample-rate", type=int_range(8000, 192000), default=None,
                         help="sample rate in Hz when the release file does not record it")
    convert.add_argument("--model", choices=("dac", "vrvq"), default="dac",
                         help="which release it is: descript-audio-codec (dac, default) or the official VRVQ (vrvq)")


def _ls() -> int:
    """One line per published codec: name, hub id, and the cached folder or how to get it."""
    from bench.codecs._hf import HFCodec
    from bench.hub import cached_snapshot, fetch_hint, hub_cache_dir
    from bench.registry import CODECS

    print(f"Hugging Face cache: {hub_cache_dir()}")
    print(f"{'codec':<12} {'hub id':<26} weights")
    for name, factory in CODECS.items():
        if not (isinstance(factory, type) and issubclass(factory, HFCodec)):
            continue
        folder = cached_snapshot(factory.hub_id)
        where = str(folder) if folder else f"missing: run `{fetch_hint(factory.hub_id)}`"
        print(f"{name:<12} {factory.hub_id:<26} {where}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``fetch`` or ``ls``; a bad id or a failed download is a UserError (one line, exit 2)."""
    if args.weights_action == "ls":
        return _ls()
    if args.weights_action == "convert":
        if args.model == "vrvq":
            from bench.models.vrvq_convert import convert_vrvq_release

            out = convert_vrvq_release(args.release, args.out, sample_rate_hz=args.sample_rate)
        else:
            from bench.models.dac_convert import convert_original_release

            out = convert_original_release(args.release, args.out, sample_rate_hz=args.sample_rate)
        print(f"{out} (+ card); benchmark it with --codecs {args.model}:{out}")
        return 0
    from bench.hub import fetch_weights

    folder = fetch_weights(args.hub_id, revision=args.revision)
    print(f"{args.hub_id}: {folder}")
    return 0
