"""A tiny, fast pretraining config for CPU tests (ViT of 2 blocks on 16 px digits)."""

from __future__ import annotations

from attmask.config import Config, load_config

TINY = [
    "model.arch=vit_tiny", "model.depth=2", "model.patch_size=4", "model.drop_path_rate=0.0",
    "head.out_dim=64", "head.patch_out_dim=64", "head.hidden_dim=64", "head.bottleneck_dim=32",
    "data.source=digits", "data.crops=tiny", "data.batch_size=8", "data.num_workers=0",
    "optim.epochs=2", "optim.warmup_epochs=1", "loss.warmup_teacher_temp_epochs=1",
    "train.max_steps_per_epoch=2", "train.progress=false", "train.log_every_steps=1",
    "train.device=cpu", "train.precision=fp32", "masking.probability=1.0",
]


def tiny_config(*overrides: str) -> Config:
    """The tiny config with extra ``key=value`` overrides."""
    return load_config(None, [*TINY, *overrides])


def losses_by_step(records: list[dict]) -> dict[int, float]:
    """Last logged loss of every global step (a resumed run re-logs replayed steps)."""
    return {r["step"]: r["loss"] for r in records if "loss" in r and "step" in r}


#: Overrides of a tiny MAE run (random masking, 75% hidden, a one-block decoder).
TINY_MAE = (
    "train.method=mae", "masking.strategy=random", "masking.ratio=0.75", "masking.probability=1.0",
    "recon.decoder_dim=32", "recon.decoder_depth=1", "recon.decoder_heads=2",
)
