"""Shipped checkpoints: safetensors weights plus a JSON card each."""
