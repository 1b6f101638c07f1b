"""Projection heads and reconstruction decoders."""

from attmask.heads.dino_head import DINOHead, freeze_last_layer_grads
from attmask.heads.mae_decoder import MAEDecoder
from attmask.heads.mst_decoder import MSTDecoder

__all__ = ["DINOHead", "MAEDecoder", "MSTDecoder", "freeze_last_layer_grads"]
