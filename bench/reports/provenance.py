"""Where each codec's weights came from, for labels and the report's codec section.

A label names the codec with its checkpoint, so no table, legend or CSV row can mix up two
versions of one codec: ``dac[small]`` (the in-repo checkpoint shipped with bench, its card's
config name), ``dac[published:dac_44khz]`` / ``encodec[encodec_24khz]`` (published weights: the
card's or folder's name), ``dac[ckpt]`` (a user's checkpoint file: its stem). Codecs without
weights (pcm16, opus) keep their plain key.

The facts come from the run's stored codec info: ``checkpoint`` (what the user passed, None for
the default), ``checkpoint_hash`` and, when the runner records it, ``card`` (the checkpoint
card's ``name``, ``config_name`` and ``training`` summary: steps, device, data hours). Without a
stored card, the codec class's shipped card is read from this installation and used only when
its weights hash matches the run's; published defaults are named by the class's hub id.
The shipped checkpoints were trained for a few thousand steps on a CPU: every label of one
carries :data:`CPU_MARK`, explained by :data:`CPU_NOTE`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

CPU_MARK = "*"
CPU_NOTE = (f"{CPU_MARK} in-repo checkpoint trained briefly on a CPU (a smoke-test model, "
            "not the codec's published quality).")
DEMO_BANNER = "demo set: a smoke set, not a benchmark"
_WEIGHT_FILES = (".safetensors", ".json")


def _stem(path: str) -> str:
    name = Path(path.rstrip("/\\")).name
    for suffix in _WEIGHT_FILES:
        name = name.removesuffix(suffix)
    return name


def _has_weights(key: str, info: dict[str, Any]) -> bool:
    """Whether the codec runs learned weights: a checkpoint given, a card stored, or a parameter count.

    A codec without weights (pcm16, opus) stores its backend's version as ``checkpoint_hash`` and no
    parameter count.
    """
    params = info.get("parameters")
    return (":" in key or bool(info.get("checkpoint")) or isinstance(info.get("card"), dict)
            or (isinstance(params, (int, float)) and params > 0))


@lru_cache(maxsize=None)  # read each codec's shipped cards once per process
def _class_facts(name: str) -> dict[str, Any]:
    """The registered codec class's default weights: ``hub_id`` or the shipped card (empty when unknown)."""
    try:
        from bench.registry import CODECS

        cls = CODECS.get(name)
    except Exception:  # noqa: BLE001 - a report of a codec this installation lacks still renders
        cls = None
    if cls is None:
        return {}
    hub_id = getattr(cls, "hub_id", "")
    if isinstance(hub_id, str) and hub_id:
        return {"hub_id": hub_id}
    try:
        codec = cls()
        cards = [card for _, (_, card) in sorted(codec.cards.items())]
        digest = codec.checkpoint_hash
    except Exception:  # noqa: BLE001 - no shipped card (a codec without weights)
        return {}
    if not cards:
        return {}
    return {"card": _merged_card(cards), "hash": digest}


def _merged_card(cards: list[dict[str, Any]]) -> dict[str, Any]:
    """One card for a shipped set (EuleroDec: one network per bitrate): names joined with ``+``, training of each."""
    if len(cards) == 1:
        return cards[0]
    training = dict(cards[0].get("training") or {})
    steps = [c.get("training", {}).get("steps") for c in cards]
    training["steps"] = "+".join(str(x) for x in steps if x) or None
    return {"name": "+".join(str(c.get("name", "")) for c in cards),
            "config_name": "+".join(str(c.get("config_name") or c.get("name", "")) for c in cards),
            "training": training}


def _card(name: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The run's checkpoint card: stored with the run, else the shipped one when its hash matches."""
    stored = info.get("card")
    if isinstance(stored, dict):
        return stored
    facts = _class_facts(name)
    shipped = facts.get("card")
    if isinstance(shipped, dict) and facts.get("hash") == info.get("checkpoint_hash"):
        return shipped
    return None


def is_in_repo(key: str, info: dict[str, Any] | None) -> bool:
    """Whether the codec ran the shipped, CPU-trained in-repo checkpoint (no checkpoint given, a card found)."""
    if not info or ":" in key or info.get("checkpoint"):
        return False
    card = _card(key, info)
    return card is not None and not str(card.get("name", "")).startswith("published:")


def _published_name(key: str, checkpoint: str | None, info: dict[str, Any]) -> str | None:
    """``published:<name>`` (a bench codec on published weights) or the hub folder's name; None otherwise."""
    card = _card(key.split(":", 1)[0], info)
    if card is not None and str(card.get("name", "")).startswith("published:"):
        return str(card["name"])
    if checkpoint is None:
        hub_id = _class_facts(key).get("hub_id")
        return _stem(hub_id) if isinstance(hub_id, str) else None
    if not checkpoint.endswith(_WEIGHT_FILES):
        return _stem(checkpoint)  # a weights folder or hub id
    return None


def short_label(key: str) -> str:
    """The label without the run's codec info: ``dac:/a/b/ckpt.safetensors`` -> ``dac:ckpt`` (also accepted as a name)."""
    name, _, path = key.partition(":")
    return f"{name}:{_stem(path)}" if path else key


def codec_label(key: str, info: dict[str, Any] | None = None) -> str:
    """``name[checkpoint]`` for a codec with weights (see the module); :func:`short_label` without ``info``."""
    name, _, path = key.partition(":")
    if not info or not _has_weights(key, info):
        return short_label(key)
    checkpoint = path or info.get("checkpoint") or None
    published = _published_name(key, checkpoint, info)
    if published is not None:
        return f"{name}[{published}]"
    if checkpoint:
        return f"{name}[{_stem(str(checkpoint))}]"
    card = _card(name, info) or {}
    tag = card.get("config_name") or card.get("name") or "in-repo"
    return f"{name}[{tag}]{CPU_MARK if is_in_repo(key, info) else ''}"


def checkpoint_source(key: str, info: dict[str, Any] | None) -> str:
    """One sentence: where the codec's weights came from (release and hash, or the in-repo card's training)."""
    info = info or {}
    digest = str(info.get("checkpoint_hash") or "")
    if not _has_weights(key, info):
        return f"no learned weights ({digest})" if digest and digest != "none" else "no learned weights"
    short = digest[:12]
    if is_in_repo(key, info):
        training = (_card(key, info) or {}).get("training") or {}
        facts = [f"{training['steps']} steps" if training.get("steps") else "",
                 f"on {training['device']}" if training.get("device") else "",
                 _data_text(training.get("data"))]
        detail = ", ".join(f for f in facts if f)
        return f"in-repo checkpoint shipped with bench ({detail or 'training not recorded'}), sha256 {short} {CPU_MARK}"
    checkpoint = key.partition(":")[2] or info.get("checkpoint")
    if _published_name(key, checkpoint or None, info) is not None:
        where = checkpoint or _class_facts(key).get("hub_id") or "the default release"
        return f"official release {where}, sha256 {short}"
    return f"user checkpoint {checkpoint or 'not recorded'}, sha256 {short}"


def _data_text(data: Any) -> str:
    """Training data in a few words (hours per group) from a card's ``training.data``."""
    if not isinstance(data, dict):
        return ""
    groups = data.get("groups")
    if isinstance(groups, dict):
        hours = sum(float(g.get("hours", 0.0)) for g in groups.values() if isinstance(g, dict))
        return f"{hours:.1f} h of training audio ({', '.join(sorted(groups))})"
    return ""


def demo_banner(data: Any) -> str | None:
    """The banner of a run on the ``demo`` dataset (any of its items, or the manifest's setting), else None."""
    datasets = set()
    items = getattr(data, "items", None)
    if items is not None and "dataset" in items:
        datasets |= {str(d) for d in items["dataset"]}
    setting = data.setting("dataset") if hasattr(data, "setting") else None
    if isinstance(setting, str):
        datasets.add(setting)
    return DEMO_BANNER if "demo" in datasets else None
