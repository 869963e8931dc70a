"""Shared base of codecs whose weights come from a bench checkpoint (safetensors + JSON card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Never

from bench.codecs.base import Codec


class CheckpointCodec(Codec):
    """Resolves the checkpoint (user path or the shipped default), reads and checks its card, builds the config.

    Subclasses set ``name`` and ``default_checkpoint`` and implement ``config_from_dict``.
    """

    default_checkpoint: Path

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint)
        self._card: dict | None = None
        self._config = None
        self.model = None

    def config_from_dict(self, config: dict[str, Any]) -> Never:
        """Build the model config recorded in the card."""
        raise TypeError(f"{type(self).__name__} must implement config_from_dict")

    @property
    def checkpoint_path(self) -> Path:
        from bench.models.checkpoint import weights_path

        return weights_path(self.checkpoint) if self.checkpoint else self.default_checkpoint

    @property
    def card(self) -> dict:
        if self._card is None:
            from bench.models.checkpoint import codec_card

            self._card = codec_card(self.name, self.checkpoint, self.default_checkpoint)
        return self._card

    @property
    def config(self):
        if self._config is None:
            self._config = self.config_from_dict(self.card["config"])
        return self._config
