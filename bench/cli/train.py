"""``bench train MODEL [options]``: train an in-repo codec.

Each trainable model is one module ``bench.train.<MODEL>`` exposing ``train(args)`` and optionally
``add_model_arguments(parser)``; a new model plugs in by adding that one file. The common options
below are shared; the model module adds its own. Model modules are imported only when a model is
named, so ``bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from bench.cli.args import (
    OneLineParser,
    float_range,
    non_negative_int,
    positive_int,
    torch_device,
    writable_dir,
)

NOT_MODELS = {"cli", "loop", "data", "losses", "checkpoint", "discriminators"}


def available_models() -> list[str]:
    import bench.train as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                  if not m.name.startswith("_") and m.name not in NOT_MODELS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model to train: " + ", ".join(available_models()))
    p.add_argument("options", nargs=argparse.REMAINDER,
                   help="training options (see 'bench train MODEL --help')")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="named model config (e.g. small, tiny, 24k)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="audio folders (speech/ music/ general/ sub-folders become groups; NAME=DIR names one)")
    p.add_argument("--steps", type=positive_int, required=True, help="total training steps (including resumed ones)")
    p.add_argument("--out", required=True, type=writable_dir, help="output folder: checkpoints, training state, loss log")
    p.add_argument("--device", default=None, type=torch_device, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=None, help="items per step per process (default: per config)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--num-threads", type=positive_int, default=None,
                   help="torch CPU threads (set 1 on shared machines)")
    p.add_argument("--checkpoint-every", type=positive_int, default=250, help="steps between checkpoints")
    p.add_argument("--validate-every", type=non_negative_int, default=250, help="steps between validations (0: never)")
    p.add_argument("--log-every", type=positive_int, default=10, help="steps averaged per loss-log line")
    p.add_argument("--holdout-fraction", type=float_range(0.0, 0.5), default=0.02,
                   help="share of each group's files held out for validation (at least one unit per group)")
    p.add_argument("--val-per-group", type=non_negative_int, default=6, help="validation clips per group")
    p.add_argument("--val-duration-s", type=float_range(0.1, 60.0), default=3.0, help="length of each validation clip")
    p.add_argument("--half", action="store_true", help="store exported weights as float16")
    p.add_argument("--data-licence", action="append", default=[], metavar="TEXT",
                   help="licence note for the card (repeatable); known corpora are named automatically")


def build_model_parser(model: str, module) -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"bench train {model}", description=(module.__doc__ or "").strip())
    add_common_arguments(p)
    adder = getattr(module, "add_model_arguments", None)
    if adder is not None:
        adder(p.add_argument_group(f"{model} options"))
    return p


def load_model_module(model: str):
    models = available_models()
    if model not in models:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"no trainable model {model!r}.{did_you_mean(model, models)}")
    module = importlib.import_module(f"bench.train.{model}")
    if not hasattr(module, "train"):
        raise AttributeError(f"bench.train.{model} has no train(args)")
    return module


def main(args: argparse.Namespace) -> int:
    try:
        module = load_model_module(args.model)
    except KeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    full = build_model_parser(args.model, module).parse_args(args.options)
    full.model = args.model
    return int(module.train(full) or 0)
