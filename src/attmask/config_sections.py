"""The sections of the pretraining configuration (``model``, ``head``, ``loss``, ``recon``,
``lut``, ``data``, ``optim``, ``train``): typed dataclasses with their defaults and what each key
means. :class:`attmask.config.Config` puts them together and reads them from YAML; the masking
section is :class:`attmask.masking.MaskingConfig`, beside the strategies it configures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    """Backbone. ``img_size`` of the ViT is the global crop size of the data config.

    ``stem_channels > 0``: a 3x3 convolution of that many channels and a GELU before the patch
    projection (a convolutional stem, :mod:`attmask.models.conv_stem`); 0 = the plain ViT.
    ``pos_embed_init``: ``normal`` (std 0.02, DINO / iBOT) or ``sincos`` (MAE's 2-D table as the
    starting point of the trained position embedding).
    ``depth``, ``embed_dim``, ``num_heads``: override the named ``arch`` (None = its value), so
    any ViT of the original code can be built (e.g. width 48 with 3 heads).

    Attributes:
        arch: named ViT (timm's widths and depths).
        patch_size: pixels per patch side.
        drop_path_rate: stochastic depth of the student's last block (linear from 0).
        depth, embed_dim, num_heads: override the architecture's (null: keep it).
        stem_channels: channels of a 3x3 convolutional stem before the patches (0: none).
        pos_embed_init: start of the position table (normal: std 0.02; sincos: MAE's table).
    """

    arch: str = "vit_small"
    patch_size: int = 16
    drop_path_rate: float = 0.1
    depth: int | None = None
    embed_dim: int | None = None
    num_heads: int | None = None
    stem_channels: int = 0
    pos_embed_init: str = "normal"


@dataclass
class HeadConfig:
    """Projection head (DINO head; iBOT shares it between [CLS] and patch tokens).

    Attributes:
        out_dim, patch_out_dim: prototypes K of the [CLS] and of the patch head.
        hidden_dim, bottleneck_dim: MLP width and the L2-normalised bottleneck before the prototypes.
        norm_last_layer: keep the prototypes' weight-norm magnitudes frozen at 1.
        shared_head: one head for [CLS] and patch tokens (iBOT); false: a second head for patches.
    """

    out_dim: int = 8192
    patch_out_dim: int = 8192
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = False
    shared_head: bool = True


@dataclass
class LossConfig:
    """Temperatures, centring and term weights (iBOT / DINO defaults).

    Attributes:
        student_temp: temperature of the student's softmax.
        warmup_teacher_temp, teacher_temp: teacher [CLS] temperature, linear from the first to the second.
        warmup_teacher_patch_temp, teacher_patch_temp: the same for the patch tokens (L_MIM).
        warmup_teacher_temp_epochs: epochs of that linear warm-up.
        center_momentum: EMA of the centre subtracted from the teacher's outputs.
        lambda_cls, lambda_patch: weights of L_[CLS] and L_MIM.
        mim_start_epoch: epochs before masking and L_MIM start.
    """

    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_patch_temp: float = 0.04
    teacher_patch_temp: float = 0.07
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    lambda_cls: float = 1.0
    lambda_patch: float = 1.0
    mim_start_epoch: int = 0


@dataclass
class ReconstructionConfig:
    """Pixel reconstruction of MAE, SimMIM, MST and LUT.

    Attributes:
        decoder_dim, decoder_depth, decoder_heads: MAE's transformer decoder (MAE, LUT).
        norm_pix_loss: MAE's target: each patch's pixels normalised by their own mean and std.
        mask_patch_size: SimMIM's masking unit in pixels (e.g. 32 on a 16 px grid); None = the
            ViT patch size. A multiple of the patch size.
        weight: weight of the pixel loss; None = the method's default (MST 0.6, others 1).
    """

    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True
    mask_patch_size: int | None = None
    weight: float | None = None


@dataclass
class LUTConfig:
    """LUT's broader-context loss on unmasked tokens (Kim et al., ECCV 2024).

    Attributes:
        hidden_dim, out_dim: projector / predictor (Linear-BN-ReLU-Linear) widths.
        weight: weight of the loss; total = L_pixel + weight * L_BC.
    """

    hidden_dim: int = 4096
    out_dim: int = 256
    weight: float = 0.25


@dataclass
class DataConfig:
    """Data set and multi-crop augmentation (``crops`` preset, fields override it).

    Attributes:
        augment_on: where the random augmentations run. ``workers`` (default): every image is
            augmented on its own in the DataLoader workers. ``device``: the workers only decode
            each image to a ``decode_size`` square uint8 tensor and the trainer augments the whole
            batch on the training device (:mod:`attmask.data.batched`), so a few CPU cores can
            feed a GPU.
        decode_size: side of the decoded square with ``augment_on=device`` (shorter side resized
            to it, then centre-cropped); default the larger crop size. Crops are cut from this
            square without antialiasing, so keep it near the crop sizes.
        subset: the first fraction (in (0, 1], 1 = all) of each class's images; None = all.
        per_class: the first that many images of each class instead (a count, never a fraction).
        max_image_pixels: images with more pixels are skipped as unreadable (with one warning
            naming the file) instead of being decoded: PIL's decompression-bomb guard, whose
            default (about 179 million pixels) this is.
        val_images: training images held out of pretraining (fixed seed) as the validation
            queries of the k-NN monitor, whose bank then comes from the rest of the training set:
            choose recipes on this split, never on the test split. 0 (default): no hold-out; the
            monitor uses the test split.
    """

    source: str = "fashion-mnist"
    data_dir: str | None = None
    subset: float | None = None
    per_class: int | None = None
    crops: str = "imagenet"
    global_size: int | None = None
    global_scale: tuple[float, float] | None = None
    local_size: int | None = None
    local_scale: tuple[float, float] | None = None
    num_local: int | None = None
    batch_size: int = 64
    num_workers: int = 4
    augment_on: str = "workers"
    decode_size: int | None = None
    val_images: int = 0
    max_image_pixels: int = 178_956_970


@dataclass
class OptimConfig:
    """AdamW, schedules, clipping (iBOT defaults; ``lr`` is per 256 images; MAE uses betas (0.9, 0.95)).

    Attributes:
        epochs: passes (or train.max_steps_per_epoch steps) trained.
        schedule_epochs: length of the lr / weight-decay / momentum schedules (0: ``epochs``); a
            longer one trains the first ``epochs`` epochs of a longer run's schedules.
        lr, min_lr: peak lr per 256 images and the cosine's end.
        warmup_epochs: linear lr warm-up.
        weight_decay, weight_decay_end: cosine from one to the other.
        teacher_momentum, teacher_momentum_end: EMA momentum of the teacher, cosine from one to the other.
        betas: AdamW's.
        clip_grad: gradient norm limit (0: none).
        freeze_last_layer_epochs: epochs during which the prototypes get no update.
        last_layer_lr_scale: lr multiplier of the prototypes after that (1: the original recipe).
        accumulation_steps: micro-batches per optimizer step.
    """

    epochs: int = 100
    schedule_epochs: int = 0
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    teacher_momentum: float = 0.996
    teacher_momentum_end: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 3.0
    freeze_last_layer_epochs: int = 1
    last_layer_lr_scale: float = 1.0
    accumulation_steps: int = 1


@dataclass
class TrainConfig:
    """Run-level settings.

    Attributes:
        fidelity: ``default`` (this project's numerics) or ``original`` (the original AttMask / iBOT /
            DINO code's numerics, step for step: local-crop position embeddings resized with
            ``scale_factor = (n + 0.1) / N`` and no antialiasing, weight decay on ``cls_token``,
            ``pos_embed`` and ``mask_token``, each parameter's gradient clipped on its own, one
            masking ratio per batch and AttMask-Hint's hint ratio drawn as ``show_max`` times a
            second masking ratio). README "Fidelity to the original code" lists each difference
            and its measured effect. (The original's *costs*, not its numerics, are replicated
            only by the step benchmark, ``benchmarks/bench_step.py``.)
        loggers: where the metrics go besides ``log.jsonl`` (always written): ``tensorboard``
            (default, when installed), ``wandb``, ``mlflow`` (:mod:`attmask.engine.trackers`).
        compile: ``torch.compile`` the student's and the teacher's backbone with dynamic shapes
            (batch size and crop resolution are symbolic: no recompilation per size). Off by
            default: the first steps pay the compilation, and inductor needs a C++ compiler on CPU.
        activation_checkpointing: recompute each block's activations in the backward pass instead of
            keeping them (``torch.utils.checkpoint``: compute traded for activation memory).
        parallel: how several processes share the model: ``ddp`` (a full copy each, gradients
            all-reduced; ``checkpoint.pth``) or ``fsdp`` (FSDP2: weights, gradients and AdamW state
            sharded per ViT block; sharded ``checkpoint.dcp/`` written by every process, resumable on
            another number of processes). Same losses either way; a run may switch between resumes.
    """

    method: str = "ibot"
    precision: str = "auto"
    device: str = "auto"
    num_threads: int = 0
    seed: int = 0
    save_every_steps: int = 0
    keep_every_epochs: int = 0
    log_every_steps: int = 10
    max_steps_per_epoch: int = 0
    knn_every_epochs: int = 0
    knn_k: int = 20
    knn_train_samples: int = 10000
    knn_test_samples: int = 2000
    knn_baseline: bool = False
    figures_every_epochs: int = 0
    figure_images: int = 4
    progress: bool = True
    compile: bool = False
    activation_checkpointing: bool = False
    parallel: str = "ddp"
    fidelity: str = "default"
    loggers: list[str] = field(default_factory=lambda: ["jsonl", "tensorboard"])
