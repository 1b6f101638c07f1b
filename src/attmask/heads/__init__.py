"""Projection heads (DINO, LUT's projector / predictor) and reconstruction decoders."""

from attmask.heads.dino_head import DINOHead, last_layer_parameters
from attmask.heads.lut_mlp import LUTMLP
from attmask.heads.mae_decoder import MAEDecoder
from attmask.heads.mst_decoder import MSTDecoder
from attmask.heads.simmim_head import SimMIMHead

__all__ = ["DINOHead", "LUTMLP", "MAEDecoder", "MSTDecoder", "SimMIMHead", "last_layer_parameters"]
