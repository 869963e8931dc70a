"""The published DAC weights in our :class:`~bench.models.dac_model.DAC`: Hugging Face folders and the original release.

Two sources hold the same released networks (16, 24 and 44.1 kHz):

* a ``transformers`` folder as ``DacModel.save_pretrained`` writes it (``config.json`` +
  ``model.safetensors``): :func:`config_from_hf`, :func:`state_dict_from_hf`, :func:`load_hf_folder`;
* the original descript-audio-codec ``.pth`` (``{"state_dict": ..., "metadata": {"kwargs": ...}}`` as
  audiotools' ``BaseModel.save`` writes it, or a bare state dict): :func:`convert_original_release`
  turns it, once, into a bench checkpoint (safetensors + JSON card). That ``torch.load(...,
  weights_only=True)`` is the one place bench reads a pickle, and only tensors and plain containers.

Weight-normalised convolutions may arrive as a plain ``weight`` (transformers removes weight norm
before saving), as ``weight_g``/``weight_v`` (the old ``torch.nn.utils.weight_norm`` hook) or as
``parametrizations.weight.original0/1``; all map onto our parametrised ``original0`` (g) / ``original1`` (v).
The released decoders have no output padding in their odd-stride transposed convs, so every config
built here sets ``odd_stride_output_padding=False``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError
from bench.models.checkpoint import save_checkpoint, sha256_file
from bench.models.dac_model import DAC, DACConfig

WN_G = ".parametrizations.weight.original0"
WN_V = ".parametrizations.weight.original1"
# transformers' residual-unit member -> index in our ResidualUnit.block
_RES_POS = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}
RELEASE_LICENCE = "MIT (descript-audio-codec released weights)"


# ---- configuration ------------------------------------------------------------------------------
def _hf_get(hf_config: Any, key: str, default: Any = None) -> Any:
    """A field of a ``DacConfig`` or of its ``config.json`` dict."""
    if isinstance(hf_config, Mapping):
        return hf_config.get(key, default)
    return getattr(hf_config, key, default)


def config_from_hf(hf_config: Any) -> DACConfig:
    """Our config for a transformers ``DacConfig`` (or its ``config.json`` dict), released layout.

    transformers derives the decoder rates (reversed encoder rates) and the latent width
    (``encoder_hidden_size * 2**len(rates)``) the same way the original code does.
    """
    rates = tuple(int(r) for r in _hf_get(hf_config, "downsampling_ratios", (2, 4, 8, 8)))
    up = _hf_get(hf_config, "upsampling_ratios")
    enc_dim = int(_hf_get(hf_config, "encoder_hidden_size", 64))
    return DACConfig(
        sample_rate_hz=int(_hf_get(hf_config, "sampling_rate", 16000)),
        encoder_dim=enc_dim,
        encoder_rates=rates,
        latent_dim=int(_hf_get(hf_config, "hidden_size", enc_dim * 2 ** len(rates))),
        decoder_dim=int(_hf_get(hf_config, "decoder_hidden_size", 1536)),
        decoder_rates=tuple(int(r) for r in up) if up else rates[::-1],
        n_codebooks=int(_hf_get(hf_config, "n_codebooks", 9)),
        codebook_size=int(_hf_get(hf_config, "codebook_size", 1024)),
        codebook_dim=int(_hf_get(hf_config, "codebook_dim", 8)),
        quantizer_dropout=float(_hf_get(hf_config, "quantizer_dropout", 0.0)),
        odd_stride_output_padding=False,
    )


# ---- weight normalisation -----------------------------------------------------------------------
def _normalise_weight_norm(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rewrite every conv weight as our parametrised (g, v) pair.

    ``weight_g``/``weight_v`` and ``original0/1`` are renamed; a plain 3-D conv ``weight`` becomes
    ``v = weight`` and ``g = ||weight||`` over all dims but 0 (``weight_norm``'s default ``dim=0``,
    also for the transposed convs), which reproduces the weight up to float rounding.
    """
    out: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.endswith(".weight_g"):
            out[key[: -len(".weight_g")] + WN_G] = t
        elif key.endswith(".weight_v"):
            out[key[: -len(".weight_v")] + WN_V] = t
        elif key.endswith(".weight") and t.dim() == 3:
            base = key[: -len(".weight")]
            out[base + WN_V] = t
            out[base + WN_G] = torch.linalg.vector_norm(t, dim=(1, 2), keepdim=True)
        else:
            out[key] = t
    return out


def _count_blocks(keys: list[str], prefix: str) -> int:
    """Number of ``prefix.<i>.`` blocks among ``keys`` (max index + 1)."""
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    found = [int(m.group(1)) for k in keys if (m := pat.match(k))]
    return max(found) + 1 if found else 0


# ---- transformers layout ------------------------------------------------------------------------
def _hf_rules(n_dec: int) -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    """Regex rewrites from transformers' module names to ours (``n_dec`` decoder blocks)."""
    def res(side: str, first: int) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            block = int(m.group(1)) + 1
            unit = int(m.group(2)) - 1 + first
            root = "encoder.body" if side == "encoder" else "decoder.model"
            return f"{root}.{block}.block.{unit}.block.{_RES_POS[m.group(3)]}."
        return sub

    def fixed(text: str) -> Callable[[re.Match[str]], str]:
        return lambda m: text

    def indexed(root: str, pos: int) -> Callable[[re.Match[str]], str]:
        return lambda m: f"{root}.{int(m.group(1)) + 1}.block.{pos}."

    unit = r"res_unit([123])\.(snake1|conv1|snake2|conv2)\."
    rules: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"^encoder\.conv1\.", fixed("encoder.body.0.")),
        (rf"^encoder\.block\.(\d+)\.{unit}", res("encoder", 0)),
        (r"^encoder\.block\.(\d+)\.snake1\.", indexed("encoder.body", 3)),
        (r"^encoder\.block\.(\d+)\.conv1\.", indexed("encoder.body", 4)),
        (r"^encoder\.snake1\.", fixed("encoder.head.0.")),
        (r"^encoder\.conv2\.", fixed("encoder.head.1.")),
        (r"^decoder\.conv1\.", fixed("decoder.model.0.")),
        (rf"^decoder\.block\.(\d+)\.{unit}", res("decoder", 2)),
        (r"^decoder\.block\.(\d+)\.snake1\.", indexed("decoder.model", 0)),
        (r"^decoder\.block\.(\d+)\.conv_t1\.", indexed("decoder.model", 1)),
        (r"^decoder\.snake1\.", fixed(f"decoder.model.{n_dec + 1}.")),
        (r"^decoder\.conv2\.", fixed(f"decoder.model.{n_dec + 2}.")),
        (r"^quantizer\.quantizers\.", fixed("quantizer.quantizers.")),
    ]
    return [(re.compile(p), f) for p, f in rules]


def _rename(key: str, rules: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]) -> str:
    """Apply the first matching rule to ``key``; a key no rule knows is an error, not dropped."""
    for pattern, sub in rules:
        m = pattern.match(key)
        if m:
            return sub(m) + key[m.end():]
    raise UserError(f"unexpected DAC weight {key!r}: not part of the published architecture")


def state_dict_from_hf(hf_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our :class:`DAC` state dict from a transformers ``DacModel`` state dict (any weight-norm form)."""
    sd = {k.removeprefix("dac."): v for k, v in hf_state_dict.items()}
    rules = _hf_rules(_count_blocks(list(sd), "decoder.block"))
    return _normalise_weight_norm({_rename(k, rules): v for k, v in sd.items()})


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``save_pretrained`` folder: one ``model.safetensors`` or its sharded index."""
    from safetensors.torch import load_file

    single = folder / "model.safetensors"
    if single.exists():
        return load_file(str(single))
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(load_file(str(folder / shard)))
        return out
    raise UserError(f"{folder}: no model.safetensors (bench never unpickles pytorch_model.bin; "
                    "re-save the model with save_pretrained(safe_serialization=True))")


def load_hf_folder(path: str | Path) -> DAC:
    """A :class:`DAC` (eval mode) with the weights of a transformers ``DacModel`` folder."""
    folder = Path(path)
    config_file = folder / "config.json"
    if not config_file.exists():
        raise UserError(f"{folder}: no config.json; expected a folder written by DacModel.save_pretrained")
    hf_config = json.loads(config_file.read_text())
    if hf_config.get("model_type", "dac") != "dac":
        raise UserError(f"{folder}: config.json is for model_type {hf_config.get('model_type')!r}, not 'dac'")
    model = DAC(config_from_hf(hf_config))
    _load_strict(model, state_dict_from_hf(_read_safetensors(folder)), str(folder))
    return model.eval()


def _load_strict(model: DAC, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; missing, unexpected or misshapen weights raise a one-line error."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).split("\n\t", 2)[1:2] or [str(exc)]
        raise UserError(f"{source}: weights do not fit the DAC architecture ({first[0].strip()})") from None
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"{source}: weights do not fit the DAC architecture "
                        f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})")


# ---- original descript-audio-codec release ------------------------------------------------------
def state_dict_from_original(original: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from descript-audio-codec's ``DAC.state_dict()``.

    The original encoder is one ``encoder.block`` Sequential (input conv, blocks, Snake, output conv);
    ours splits it into ``encoder.body`` and ``encoder.head``. Decoder and quantizer names agree.
    """
    n_enc = _count_blocks(list(original), "encoder.block")  # input conv + blocks + snake + conv
    out: dict[str, torch.Tensor] = {}
    for key, t in original.items():
        m = re.match(r"^encoder\.block\.(\d+)\.", key)
        if m:
            i, rest = int(m.group(1)), key[m.end():]
            key = f"encoder.head.{i - (n_enc - 2)}.{rest}" if i >= n_enc - 2 else f"encoder.body.{i}.{rest}"
        elif not key.startswith(("decoder.model.", "quantizer.quantizers.")):
            raise UserError(f"unexpected DAC weight {key!r}: not part of the published architecture")
        out[key] = t
    return _normalise_weight_norm(out)


def _conv_out(state: Mapping[str, torch.Tensor], base: str) -> int:
    """Output channels of our parametrised conv ``base`` (from v's shape)."""
    return int(state[base + WN_V].shape[0])


def config_from_state(state: Mapping[str, torch.Tensor], sample_rate_hz: int,
                      kwargs: Mapping[str, Any] | None = None) -> DACConfig:
    """The released-layout config that fits our ``state`` (shapes decide; ``kwargs`` only adds dropout)."""
    keys = list(state)
    n_enc = _count_blocks(keys, "encoder.body") - 1
    n_dec = _count_blocks(keys, "decoder.model") - 3
    enc_rates = tuple(int(state[f"encoder.body.{i}.block.4{WN_V}"].shape[-1]) // 2 for i in range(1, n_enc + 1))
    dec_rates = tuple(int(state[f"decoder.model.{i}.block.1{WN_V}"].shape[-1]) // 2 for i in range(1, n_dec + 1))
    book = state["quantizer.quantizers.0.codebook.weight"]
    return DACConfig(
        sample_rate_hz=int(sample_rate_hz),
        encoder_dim=_conv_out(state, "encoder.body.0"),
        encoder_rates=enc_rates,
        latent_dim=_conv_out(state, "encoder.head.1"),
        decoder_dim=_conv_out(state, "decoder.model.0"),
        decoder_rates=dec_rates,
        n_codebooks=_count_blocks(keys, "quantizer.quantizers"),
        codebook_size=int(book.shape[0]),
        codebook_dim=int(book.shape[1]),
        quantizer_dropout=float((kwargs or {}).get("quantizer_dropout", 0.0)),
        odd_stride_output_padding=False,
    )


def _read_release(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and metadata kwargs of a release ``.pth`` (tensors and plain containers only)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError and others
        raise UserError(f"{path}: cannot read it as a DAC release with weights_only=True "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(blob, Mapping):
        raise UserError(f"{path}: not a DAC release (top level is {type(blob).__name__}, not a dict)")
    state = blob.get("state_dict", blob)
    meta = blob.get("metadata", {}) if "state_dict" in blob else {}
    kwargs = meta.get("kwargs", {}) if isinstance(meta, Mapping) else {}
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path}: no tensors in the DAC release")
    return tensors, dict(kwargs)


def convert_original_release(path_pth: str | Path, out_safetensors: str | Path, *,
                             sample_rate_hz: int | None = None) -> Path:
    """Convert a descript-audio-codec ``weights*.pth`` into a bench checkpoint; returns its weights path.

    The card names the model ``"dac"``, records the architecture, the source file's name and SHA-256
    and the licence; the tensors are stored under ``generator.`` like trained checkpoints, so the
    ``dac`` codec loads the result with ``--codecs dac:PATH``. ``sample_rate_hz`` is needed only when
    the file carries no ``metadata.kwargs.sample_rate``.
    """
    src = Path(path_pth)
    if not src.is_file():
        raise UserError(f"{src}: no such DAC release file")
    original, kwargs = _read_release(src)
    rate = sample_rate_hz or kwargs.get("sample_rate")
    if not rate:
        raise UserError(f"{src}: the release records no sample rate; pass it explicitly (16000, 24000 or 44100)")
    state = state_dict_from_original(original)
    config = config_from_state(state, int(rate), kwargs)
    model = DAC(config)
    _load_strict(model, state, str(src))
    card = {
        "model": "dac",
        "name": f"dac_{round(config.sample_rate_hz / 1000)}khz_release",
        "config": config.to_dict(),
        "licence": RELEASE_LICENCE,
        "source": {"kind": "descript-audio-codec release", "file": src.name, "sha256": sha256_file(src),
                   "kwargs": _jsonable(kwargs)},
        "nominal_kbps": round(config.kbps(config.n_codebooks), 4),
        "frame_rate_hz": round(config.frame_rate_hz, 4),
    }
    tensors = {f"generator.{k}": v for k, v in model.state_dict().items()}
    return save_checkpoint(out_safetensors, tensors, card)


def _jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold turned into its ``str``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
