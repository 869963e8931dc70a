"""``bench train MODEL [options]``: train an in-repo codec.

Each trainable model is a module ``bench.train.<MODEL>`` exposing ``OPTIONS`` (its frozen options
dataclass) and ``train(config: TrainConfig) -> int``; its command-line options are declared here, in
:data:`MODEL_ARGUMENTS`, with the checked types of ``bench.cli.args``. The common options below are
shared. Defaults come from the dataclasses' field defaults (``TrainConfig`` and the model's options),
so each default is written once. Model modules are imported only when a model is named, so
``bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import fields
from types import ModuleType
from typing import Any, Callable

from bench.cli.args import (
    OneLineParser,
    existing_dir,
    float_range,
    key_value,
    non_negative_int,
    positive_int,
    torch_device,
    writable_dir,
)
from bench.train.config import OverlapCheck, TrainConfig, field_defaults

ArgumentAdder = Callable[[argparse._ArgumentGroup, dict[str, Any]], None]


def _add_phase_weight(p: argparse._ArgumentGroup, d: dict[str, Any]) -> None:
    """``--phase-weight``, shared by the GAN codecs (DAC, VRVQ)."""
    p.add_argument("--phase-weight", type=float_range(0.0), default=d["phase_weight"],
                   help="weight of a complex-STFT L1 term (magnitude and phase; not in the DAC recipe, 0 = off): "
                        "the mel and GAN terms leave the phase free, so SI-SDR stays far below 0 dB on a short "
                        "budget without it")


def add_dac_arguments(p: argparse._ArgumentGroup, d: dict[str, Any]) -> None:
    """``bench train dac`` options (defaults ``d`` from ``DACOptions``)."""
    p.add_argument("--lr", type=float_range(0.0, lo_open=True), default=d["lr"],
                   help="AdamW learning rate (generator and discriminator)")
    p.add_argument("--excerpt-s", type=float_range(0.0, lo_open=True), default=d["excerpt_s"],
                   help="excerpt length (default 0.38 s)")
    p.add_argument("--quantizer-dropout", type=float_range(0.0, 1.0), default=d["quantizer_dropout"],
                   help="override the config's 0.5")
    p.add_argument("--adv-start-step", type=non_negative_int, default=d["adv_start_step"],
                   help="train without the discriminator (mel + VQ losses only) up to this step; 0 = the DAC "
                        "recipe (adversarial from the start)")
    _add_phase_weight(p, d)


def add_vrvq_arguments(p: argparse._ArgumentGroup, d: dict[str, Any]) -> None:
    """``bench train vrvq`` options (defaults ``d`` from ``VRVQOptions``)."""
    p.add_argument("--lr", type=float_range(0.0, lo_open=True), default=d["lr"],
                   help="AdamW learning rate (generator and discriminator)")
    p.add_argument("--excerpt-s", type=float_range(0.0, lo_open=True), default=d["excerpt_s"],
                   help="excerpt length (default 0.38 s)")
    p.add_argument("--adv-start-step", type=non_negative_int, default=d["adv_start_step"],
                   help="train without the discriminator (mel + VQ + rate terms only) up to this step; 0 = the "
                        "DAC recipe (adversarial from the start)")
    p.add_argument("--importance-lr", type=float_range(0.0, lo_open=True), default=d["importance_lr"],
                   help="learning rate of the importance net (default: --lr, as in the paper)")
    p.add_argument("--rate-weight", type=float_range(0.0), default=d["rate_weight"],
                   help="lambda of the rate term lambda x mean(p)")
    p.add_argument("--surrogate", choices=("logcosh", "saturated"), default=d["surrogate"],
                   help="gradient surrogate of the mask: the paper's log-cosh, or the baseline saturated identity")
    p.add_argument("--alpha", type=float_range(0.0, lo_open=True), default=d["alpha"],
                   help="log-cosh surrogate sharpness")
    p.add_argument("--init-from", default=d["init_from"], metavar="DAC_CKPT",
                   help="warm-start from a DAC checkpoint (dac_<config>.safetensors or a DAC train_state) "
                        "of the same backbone config")
    _add_phase_weight(p, d)


def _add_kmeans_arguments(p: argparse._ArgumentGroup, d: dict[str, Any]) -> None:
    """EuleroDec's k-means refit options."""
    p.add_argument("--kmeans-seconds", type=float_range(0.0), default=d["kmeans_seconds"],
                   help="refit the codebooks by k-means on this much training audio (encoder latents) when the "
                        "run starts and every --kmeans-every steps (0: off, EMA only)")
    p.add_argument("--kmeans-every", type=non_negative_int, default=d["kmeans_every"],
                   help="steps between k-means refits (0: only at the start)")
    p.add_argument("--kmeans-iters", type=positive_int, default=d["kmeans_iters"],
                   help="Lloyd iterations per stage and refit")
    p.add_argument("--kmeans-pool", choices=("excerpts", "files"), default=d["kmeans_pool"],
                   help="k-means latents from random training excerpts, or from whole training files (each once)")
    p.add_argument("--kmeans-weight-by", choices=("frame", "residual"), default=d["kmeans_weight_by"],
                   help="k-means weights from each frame's energy or from the energy of the stage's residual")


def add_eulerodec_arguments(p: argparse._ArgumentGroup, d: dict[str, Any]) -> None:
    """``bench train eulerodec`` options (defaults ``d`` from ``EuleroDecOptions``)."""
    p.add_argument("--lr", type=float_range(0.0, lo_open=True), default=d["lr"],
                   help="AdamW learning rate (default per config)")
    p.add_argument("--lr-gamma", type=float_range(0.0, 1.0, lo_open=True), default=d["lr_gamma"],
                   help="exponential LR decay per step")
    p.add_argument("--excerpt-s", type=float_range(0.0, lo_open=True), default=d["excerpt_s"],
                   help="excerpt length in seconds (default per config)")
    _add_kmeans_arguments(p, d)
    p.add_argument("--codebook-weight-power", type=float_range(0.0), default=d["codebook_weight_power"],
                   help="override the config's inverse-energy weighting power of EMA updates and k-means refits")
    p.add_argument("--frozen-norm-stats", action="store_true", default=d["frozen_norm_stats"],
                   help="whitening layers normalise with their running statistics while training (as at inference), "
                        "so the quantiser sees the same latents in training and in use; for fine-tuning")


#: the trainable models and their command-line options (module: ``bench.train.<name>``)
MODEL_ARGUMENTS: dict[str, ArgumentAdder] = {
    "dac": add_dac_arguments,
    "eulerodec": add_eulerodec_arguments,
    "vrvq": add_vrvq_arguments,
}


def available_models() -> list[str]:
    """The models ``bench train`` can train."""
    return sorted(MODEL_ARGUMENTS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``bench train``'s own arguments: the model, then everything else for the model's parser."""
    p.add_argument("model", help="model to train: " + ", ".join(available_models()))
    p.add_argument("options", nargs=argparse.REMAINDER,
                   help="training options (see 'bench train MODEL --help')")


def dataset_split(text: str) -> tuple[str, str | None]:
    """``DATASET[:SPLIT]`` -> (dataset, split or None)."""
    name, _, split = text.partition(":")
    if not name.strip():
        raise argparse.ArgumentTypeError(f"expected DATASET[:SPLIT], got {text!r}")
    return name.strip(), split.strip() or None


def _add_data_arguments(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    """Data, hold-out, validation and overlap-check options."""
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="audio folders (speech/ music/ general/ sub-folders become groups; NAME=DIR names one)")
    p.add_argument("--holdout-fraction", type=float_range(0.0, 0.5), default=d["holdout_fraction"],
                   help="share of each group's files held out for validation (at least one unit per group)")
    p.add_argument("--val-per-group", type=non_negative_int, default=d["val_per_group"],
                   help="validation clips per group")
    p.add_argument("--val-duration-s", type=float_range(0.1, 60.0), default=d["val_duration_s"],
                   help="length of each validation clip")
    p.add_argument("--data-licence", action="append", default=[], metavar="TEXT",
                   help="licence note for the card (repeatable); known corpora are named automatically")
    p.add_argument("--check-overlap", type=dataset_split, default=None, metavar="DATASET[:SPLIT]",
                   help="compare the training files with this evaluation set's items (same content by SHA-256, "
                        "or same relative path) and record the result in the card")
    p.add_argument("--check-overlap-root", type=existing_dir, default=None, metavar="DIR",
                   help="root of the --check-overlap dataset (as 'bench run --root')")
    p.add_argument("--check-overlap-opt", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="option of the --check-overlap dataset (as 'bench run --dataset-opt'; repeatable)")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options every model takes (defaults from :class:`~bench.train.config.TrainConfig`)."""
    d = field_defaults(TrainConfig)
    p.add_argument("--config", required=True, help="named model config (e.g. small, tiny, 24k)")
    p.add_argument("--steps", type=positive_int, required=True, help="total training steps (including resumed ones)")
    p.add_argument("--out", required=True, type=writable_dir, help="output folder: checkpoints, training state, loss log")
    p.add_argument("--device", default=d["device"], type=torch_device,
                   help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"],
                   help="items per step per process (default: per config)")
    p.add_argument("--seed", type=non_negative_int, default=d["seed"])
    p.add_argument("--num-threads", type=positive_int, default=d["num_threads"],
                   help="torch CPU threads (set 1 on shared machines)")
    p.add_argument("--checkpoint-every", type=positive_int, default=d["checkpoint_every"],
                   help="steps between checkpoints")
    p.add_argument("--validate-every", type=non_negative_int, default=d["validate_every"],
                   help="steps between validations (0: never)")
    p.add_argument("--log-every", type=positive_int, default=d["log_every"], help="steps averaged per loss-log line")
    p.add_argument("--half", action="store_true", help="store exported weights as float16")
    _add_data_arguments(p, d)


def build_model_parser(model: str, module: ModuleType) -> argparse.ArgumentParser:
    """The parser of ``bench train MODEL``: the common options and the model's own."""
    p = OneLineParser(prog=f"bench train {model}", description=(module.__doc__ or "").strip())
    add_common_arguments(p)
    MODEL_ARGUMENTS[model](p.add_argument_group(f"{model} options"), field_defaults(module.OPTIONS))
    return p


def load_model_module(model: str) -> ModuleType:
    """``bench.train.<model>``; an unknown model is a user error with a suggestion."""
    models = available_models()
    if model not in models:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"no trainable model {model!r}.{did_you_mean(model, models)}")
    module = importlib.import_module(f"bench.train.{model}")
    if not hasattr(module, "train") or not hasattr(module, "OPTIONS"):
        raise AttributeError(f"bench.train.{model} needs train(config) and OPTIONS")
    return module


def _overlap_check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> OverlapCheck | None:
    """The ``--check-overlap*`` options as one :class:`OverlapCheck` (None when not asked for)."""
    if args.check_overlap is None:
        if args.check_overlap_root or args.check_overlap_opt:
            parser.error("--check-overlap-root and --check-overlap-opt need --check-overlap DATASET[:SPLIT]")
        return None
    dataset, split = args.check_overlap
    return OverlapCheck(dataset, split, args.check_overlap_root, tuple(args.check_overlap_opt))


def train_config(args: argparse.Namespace, options_cls: type, parser: argparse.ArgumentParser) -> TrainConfig[Any]:
    """The frozen :class:`TrainConfig` (with the model's options) from the parsed arguments."""
    options = options_cls(**{f.name: getattr(args, f.name) for f in fields(options_cls)})
    return TrainConfig(
        config_name=args.config, data=tuple(args.data), steps=args.steps, out=args.out, options=options,
        device=args.device, resume=args.resume, batch_size=args.batch_size, seed=args.seed,
        num_threads=args.num_threads, checkpoint_every=args.checkpoint_every, validate_every=args.validate_every,
        log_every=args.log_every, holdout_fraction=args.holdout_fraction, val_per_group=args.val_per_group,
        val_duration_s=args.val_duration_s, half=args.half, data_licences=tuple(args.data_licence),
        check_overlap=_overlap_check(args, parser))


def main(args: argparse.Namespace) -> int:
    """Parse the model's options, build its config, train; returns the exit code."""
    try:
        module = load_model_module(args.model)
    except KeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = build_model_parser(args.model, module)
    config = train_config(parser.parse_args(args.options), module.OPTIONS, parser)
    return int(module.train(config) or 0)
