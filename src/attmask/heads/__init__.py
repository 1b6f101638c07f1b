"""Projection heads (DINO, LUT's projector / predictor) and reconstruction decoders."""

from attmask.heads.dino_head import DINOHead, freeze_last_layer_grads
from attmask.heads.lut_mlp import LUTMLP
from attmask.heads.mae_decoder import MAEDecoder

__all__ = ["DINOHead", "LUTMLP", "MAEDecoder", "freeze_last_layer_grads"]
