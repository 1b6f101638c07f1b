"""Projection heads."""

from attmask.heads.dino_head import DINOHead, freeze_last_layer_grads

__all__ = ["DINOHead", "freeze_last_layer_grads"]
