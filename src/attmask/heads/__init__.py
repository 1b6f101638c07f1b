"""Projection heads and reconstruction decoders."""

from attmask.heads.dino_head import DINOHead, freeze_last_layer_grads
from attmask.heads.mae_decoder import MAEDecoder

__all__ = ["DINOHead", "MAEDecoder", "freeze_last_layer_grads"]
