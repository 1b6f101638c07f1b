"""Losses, one per file: the EMA centre, the DINO [CLS] loss, the iBOT [CLS] + masked-patch loss,
the pixel losses of MAE, SimMIM and MST, LUT's broader-context loss."""

from attmask.losses.broader_context import cosine_regression_loss, symmetric_broader_context_loss
from attmask.losses.center import Center
from attmask.losses.dino import DINOLoss, cross_view_loss
from attmask.losses.ibot import IBOTLoss, IBOTLossOutput, masked_patch_loss, masked_token_index, selected_patch_loss
from attmask.losses.pixel import image_l1_loss, mae_loss, masked_l1_loss, normalized_patches

__all__ = [
    "cosine_regression_loss",
    "image_l1_loss",
    "symmetric_broader_context_loss",
    "mae_loss",
    "masked_l1_loss",
    "normalized_patches",
    "Center",
    "DINOLoss",
    "IBOTLoss",
    "IBOTLossOutput",
    "cross_view_loss",
    "masked_patch_loss",
    "masked_token_index",
    "selected_patch_loss",
]
