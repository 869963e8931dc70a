"""Shared base of codecs whose weights come from bench checkpoints (safetensors + JSON card).

Most such codecs hold one checkpoint (DAC, VRVQ). EuleroDec holds several networks of one family,
one per bitrate (6 and 12 kbps), and its operating points say which one codes: the base resolves
a *set* of checkpoints, keyed by a label, and the one-checkpoint codecs are the set of one under
the label ``""``. In both cases ``--codecs NAME:PATH`` gives exactly one checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import torch

from bench.codecs.base import Codec

SINGLE = ""  # the label of the checkpoint of a one-checkpoint codec


NetworkT = TypeVar("NetworkT", bound=torch.nn.Module)


class CheckpointCodec(Codec):
    """Resolves the checkpoints (the user's path or the shipped defaults), reads and checks their cards.

    One checkpoint: subclasses set ``name`` and ``default_checkpoint`` and implement
    ``config_from_dict``; ``card``, ``config`` and ``checkpoint_path`` describe it, and their
    ``_load`` sets ``model``.

    Several (one network per operating-point family): subclasses also define ``default_checkpoints``
    (the shipped ones; those present are loaded) and ``label_of`` (a card -> the label its operating
    points carry); ``cards[label]`` and ``config_of(label)`` describe each, ``_load`` fills ``models``.
    """

    #: the config named in the "train one" hint of a missing-checkpoint error
    config_hint: str = "small"
    #: the network of a one-checkpoint codec: None until ``_load`` sets it (a class default, so an
    #: unloaded codec's fingerprint parameters do not list it)
    model: torch.nn.Module | None = None

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint)
        self._cards: dict[str, tuple[Path, dict[str, Any]]] | None = None
        self._configs: dict[str, Any] = {}
        self.models: dict[str, torch.nn.Module] = {}

    # --- what subclasses define ---------------------------------------------------------------
    @property
    def default_checkpoint(self) -> Path:
        """The shipped checkpoint of a one-checkpoint codec (subclasses name it)."""
        raise TypeError(f"{type(self).__name__} must define default_checkpoint")

    def config_from_dict(self, config: dict[str, Any]) -> Any:
        """Build the model config recorded in a card."""
        raise TypeError(f"{type(self).__name__} must implement config_from_dict")

    def label_of(self, card: dict[str, Any]) -> str:
        """The label of a checkpoint in the set (its operating points name it); one checkpoint: ``""``."""
        return SINGLE

    @property
    def default_checkpoints(self) -> tuple[Path, ...]:
        """The shipped checkpoints of a codec that holds several (empty: it holds one, ``default_checkpoint``)."""
        return ()

    # --- the set of checkpoints -----------------------------------------------------------------
    @property
    def holds_several(self) -> bool:
        """Whether this codec is built for a set of checkpoints (even when the user passed one)."""
        return bool(self.default_checkpoints)

    @property
    def checkpoint_path(self) -> Path:
        """The weights file of a one-checkpoint codec (the user's, or the shipped default)."""
        from bench.models.checkpoint import weights_path

        return weights_path(self.checkpoint) if self.checkpoint else self.default_checkpoint

    def _sources(self) -> list[Path]:
        """The weights files to read: the user's one, else the shipped ones present (at least one)."""
        from bench.models.checkpoint import CheckpointError, weights_path

        if self.checkpoint:
            return [weights_path(self.checkpoint)]
        if not self.holds_several:
            return [self.default_checkpoint]
        found = [p for p in self.default_checkpoints if p.exists()]
        if not found:
            raise CheckpointError(
                f"{self.name}: the shipped checkpoints are missing from this installation "
                f"({', '.join(str(p) for p in self.default_checkpoints)}). Train one with 'bench train {self.name} "
                f"--config {self.config_hint} ...' and pass it as --codecs {self.name}:PATH")
        return found

    @property
    def cards(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        """label -> (weights path, checked card); reads only the JSON cards."""
        if self._cards is None:
            from bench.models.checkpoint import CheckpointError, codec_card

            cards: dict[str, tuple[Path, dict[str, Any]]] = {}
            for path in self._sources():
                card = codec_card(self.name, self.checkpoint, path, self.config_hint)
                label = self.label_of(card)
                if label in cards:
                    raise CheckpointError(f"{self.name}: two checkpoints share the label {label!r}")
                cards[label] = (path, card)
            self._cards = cards
        return self._cards

    def config_of(self, label: str) -> Any:
        """The model config of checkpoint ``label`` (built once)."""
        if label not in self._configs:
            self._configs[label] = self.config_from_dict(self.cards[label][1]["config"])
        return self._configs[label]

    # --- one checkpoint ---------------------------------------------------------------------------
    @property
    def card(self) -> dict[str, Any]:
        """The card of a one-checkpoint codec."""
        return self.cards[SINGLE][1]

    @property
    def config(self) -> Any:
        """The model config of a one-checkpoint codec."""
        return self.config_of(SINGLE)

    # --- identity and lifecycle ------------------------------------------------------------------
    @property
    def checkpoint_hash(self) -> str:
        """The weights' SHA-256 from the card; for a set, a hash over ``label=sha256`` of every member."""
        if not self.holds_several:
            return self.card.get("weights_sha256", "none")
        joined = ",".join(f"{label}={card.get('weights_sha256', 'none')}"
                          for label, (_, card) in sorted(self.cards.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:32]

    def build_network(self, config: Any) -> torch.nn.Module:
        """A one-checkpoint codec's network for ``config``, before its weights are loaded."""
        raise TypeError(f"{type(self).__name__} must implement build_network (or its own _load)")

    def _load(self) -> None:
        """Read and verify the one checkpoint, build the network in eval mode on ``self.device``."""
        from bench.models.checkpoint import load_checkpoint, load_module

        tensors, _ = load_checkpoint(self.checkpoint or self.checkpoint_path, model=self.name)
        model = self.build_network(self.config)
        load_module(model, tensors, "generator", source=str(self.checkpoint_path))
        self.model = model.eval().to(self.device)

    def num_parameters(self) -> int | None:
        """Parameters of the loaded network, else the count the card records (a set overrides this)."""
        if self.model is not None:
            return sum(p.numel() for p in self.model.parameters())
        count = self.card.get("num_parameters")
        return count if isinstance(count, int) else None

    def _network_as(self, kind: type[NetworkT]) -> NetworkT:
        """The one network, loaded on first use, checked to be a ``kind``."""
        if not self._loaded:
            self.load(self.device)
        if not isinstance(self.model, kind):
            raise RuntimeError(f"{self.name}: load() left no {kind.__name__} network")
        return self.model

    def load(self, device: str | torch.device = "cpu") -> "CheckpointCodec":
        """Load the networks once, and move them to ``device`` on every call."""
        super().load(device)
        for network in [self.model, *self.models.values()]:
            if network is not None:
                network.to(self.device)
        return self
