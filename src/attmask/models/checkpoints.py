"""Load a ViT backbone from any common checkpoint layout, without unpickling code.

Accepted files (``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, ``.safetensors``):

* this project's pretraining checkpoints (``format: attmask-checkpoint``; a run folder works
  too): the backbone the method evaluates by default (teacher or encoder), the other on request;
* the original DINO, iBOT and AttMask training checkpoints: ``{"teacher": ..., "student": ...,
  "args": Namespace, ...}`` with ``module.`` / ``backbone.`` prefixes and projection heads;
* released backbones and other wrappers: plain state dicts, ``{"state_dict": ...}``,
  ``{"model": ...}`` (MAE), ``_orig_mod.`` prefixes (``torch.compile``);
* timm ViT state dicts and this project's exports (``attmask export``).

The architecture is read from the weights (width, depth, patch size, position grid, MLP ratio,
bias); the number of heads is not stored in weights, so it comes from the project config, the
export's JSON, the ``num_heads`` argument, the registered architecture of that width and depth or,
failing those, ``embed_dim // 64`` (timm's ViT-Ti, S, B, L). iBOT's ``masked_embed`` becomes
``mask_token``; classifier heads are dropped and listed.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attmask.core.checkpoint import CHECKPOINT_NAME, checkpoint_read_error
from attmask.core.dcp import MARKER, SHARDED_NAME, is_finished, latest_checkpoint, read_sharded
from attmask.models.registry import VIT_ARCHITECTURES, registered_heads
from attmask.models.vit import VisionTransformer

#: Written by the trainer (engine.checkpoint.FORMAT); repeated here to keep models/ standalone.
PROJECT_FORMAT = "attmask-checkpoint"
_PREFIXES = ("module.", "_orig_mod.", "backbone.", "encoder.")
_WRAPPERS = ("state_dict", "model", "model_state", "module")
_DROPPED = ("head.", "head_dist.", "fc_norm.", "pre_logits.")


@dataclass
class LoadedBackbone:
    """A backbone and where it came from.

    Attributes:
        model: the ViT in eval mode on CPU.
        path: the file read.
        layout: ``attmask``, ``teacher/student`` (DINO/iBOT/AttMask), ``state_dict`` or
            ``safetensors``.
        which: ``teacher`` or ``student`` when the file held both, else None.
        kwargs: constructor arguments of :class:`VisionTransformer`.
        config: the pretraining config for project checkpoints, else None.
        dropped: keys ignored on purpose (projection / classifier heads).
    """

    model: VisionTransformer
    path: Path
    layout: str
    which: str | None
    kwargs: dict[str, Any]
    config: dict | None = None
    dropped: list[str] = field(default_factory=list)


def resolve_checkpoint(path: str | Path) -> Path:
    """What to read: ``path`` itself (a file or a sharded checkpoint folder), or for a run folder its
    ``checkpoint.pth`` or finished ``checkpoint.dcp/`` (the newer)."""
    path = Path(path)
    if path.is_dir():
        if is_finished(path):
            return path
        if path.suffix == ".dcp" or (path / ".metadata").is_file():
            raise ValueError(
                f"{path} is a sharded checkpoint without its {MARKER} marker: its write was cut off; "
                "use an earlier checkpoint"
            )
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(
                f"{path} is a folder without {CHECKPOINT_NAME} or a finished {SHARDED_NAME}; pass a checkpoint "
                "file or a pretraining run folder"
            )
        return latest
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def read_checkpoint(path: str | Path) -> Any:
    """Tensors and plain containers of a ``.pth`` (``weights_only``) or ``.safetensors`` file, or of a
    sharded checkpoint folder (``train.parallel=fsdp``) read whole (:func:`attmask.core.dcp.read_sharded`).

    ``argparse.Namespace`` (the ``args`` entry of DINO/iBOT/AttMask checkpoints) is the only
    non-builtin type allowed; anything else that would run code on unpickling is refused.
    """
    path = resolve_checkpoint(path)
    if path.is_dir():
        return read_sharded(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch / safetensors raise several types for bad files
        raise ValueError(checkpoint_read_error(path, error)) from None


def pretraining_config(path: str | Path) -> dict[str, Any] | None:
    """The pretraining config (nested dict) a project checkpoint or run folder holds; None for
    other files (converted originals keep theirs too; timm / safetensors files have none)."""
    checkpoint = read_checkpoint(path)
    config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    return config if isinstance(config, dict) else None


def pretraining_data(config: dict[str, Any] | None) -> tuple[str, str | None] | None:
    """``(data.source, data.data_dir)`` of a pretraining config (nested dict), or None when it
    names no data source (no config, or one without a ``data`` section)."""
    data = (config or {}).get("data") or {}
    return (str(data["source"]), data.get("data_dir")) if data.get("source") else None


def _strip(state: dict[str, Any]) -> dict[str, Any]:
    """Remove wrapper prefixes; keep only ``backbone.`` keys when a head sits beside them."""
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(".backbone." in f".{k}" for k in state):
        state = {k: v for k, v in state.items() if ".backbone." in f".{k}"}
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _select(checkpoint: Any, which: str | None) -> tuple[dict[str, Any], str, str | None, dict | None]:
    """The backbone's tensors, the layout name, the branch used and the project config."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a dict of tensors, got {type(checkpoint).__name__}")
    if checkpoint.get("format") == PROJECT_FORMAT:
        which = which or checkpoint.get("evaluated_branch", "teacher")
        prefix = f"{which}.backbone."
        state = {k[len(prefix) :]: v for k, v in checkpoint["method"].items() if k.startswith(prefix)}
        if not state:
            method = checkpoint.get("config", {}).get("train", {}).get("method")
            raise ValueError(f"the {method} checkpoint has no {which} backbone; load the student instead")
        return state, "attmask", which, checkpoint.get("config")
    which = which or "teacher"
    if "teacher" in checkpoint or "student" in checkpoint:
        if which not in checkpoint:
            other = "student" if which == "teacher" else "teacher"
            raise ValueError(f"the checkpoint has no {which!r} weights, only {other!r}; load the {other} instead")
        return _strip(checkpoint[which]), "teacher/student", which, None
    for key in _WRAPPERS:
        if isinstance(checkpoint.get(key), dict):
            return _strip(checkpoint[key]), "state_dict", None, None
    return _strip(checkpoint), "state_dict", None, None


def _rename(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """iBOT's ``masked_embed`` -> ``mask_token``; drop classifier / projection heads."""
    state = dict(state)
    if "masked_embed" in state and "mask_token" not in state:
        state["mask_token"] = state.pop("masked_embed").reshape(1, 1, -1)
    dropped = sorted(k for k in state if k.startswith(_DROPPED))
    return {k: v for k, v in state.items() if k not in dropped}, dropped


def _refuse_nonfinite(state: dict[str, torch.Tensor], path: Path) -> None:
    """One line when weights hold NaN or inf (a diverged run): evaluating or exporting them is meaningless."""
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ValueError(
            f"{path} holds NaN/inf weights in {len(bad)} of {len(state)} tensors (e.g. {bad[0]}): the "
            "run diverged before this checkpoint; use an earlier one"
        )


def vit_kwargs_from_state_dict(state: dict[str, torch.Tensor], num_heads: int | None = None) -> dict[str, Any]:
    """:class:`VisionTransformer` arguments implied by a timm-layout state dict.

    Raises:
        ValueError: the keys are not those of a ViT with absolute position embeddings.
    """
    needed = ("patch_embed.proj.weight", "pos_embed", "cls_token", "blocks.0.mlp.fc1.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        sample = ", ".join(sorted(state)[:4]) or "none"
        raise ValueError(
            f"no ViT weights found (missing {', '.join(missing)}; keys start with "
            f"{sample}); pass a ViT checkpoint in timm/DINO/iBOT layout"
        )
    proj = state["patch_embed.proj.weight"]  # (D, C, p, p); C = stem channels with a conv stem
    embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
    stem = state.get("patch_embed.stem.0.weight")  # (c, C, 3, 3) of ConvStemPatchEmbed
    extra = {} if stem is None else {"stem_channels": stem.shape[0]}
    in_chans = in_chans if stem is None else stem.shape[1]
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    if grid * grid != state["pos_embed"].shape[1] - 1:
        raise ValueError(
            f"pos_embed holds {state['pos_embed'].shape[1]} tokens, not 1 + a square "
            "grid; only square position grids with one [CLS] token are supported"
        )
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    heads = num_heads or registered_heads(embed_dim, depth) or max(1, embed_dim // 64)
    if embed_dim % heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {heads}; pass the right number of heads")
    return {
        "img_size": grid * patch_size,
        "patch_size": patch_size,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        **extra,
    }


def _known_heads(path: Path, config: dict | None) -> int | None:
    """Heads from the project config or an export's JSON sidecar, when either exists."""
    if config is not None:
        arch = config.get("model", {}).get("arch")
        return VIT_ARCHITECTURES.get(arch, {}).get("num_heads")
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text()).get("timm_kwargs", {}).get("num_heads")
        except (OSError, json.JSONDecodeError):
            return None
    return None


def _load_into(model: VisionTransformer, state: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict`` with one-line errors listing missing / unexpected keys."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatch
        detail = next(
            (line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error).splitlines()[0]
        )
        raise ValueError(f"{path} does not fit the inferred ViT: {detail}") from None
    missing = [k for k in result.missing_keys if k != "mask_token"]
    if missing or result.unexpected_keys:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        raise ValueError(
            f"{path} is not a plain ViT of this layout: missing keys [{show(missing)}], "
            f"unexpected keys [{show(result.unexpected_keys)}]"
        )


def load_backbone(
    path: str | Path, which: str | None = None, num_heads: int | None = None, expect: dict[str, Any] | None = None
) -> LoadedBackbone:
    """Build the ViT a checkpoint holds and load its weights.

    Args:
        path: checkpoint file or pretraining run folder.
        which: ``teacher`` or ``student``; None (default) = the branch the method evaluates
            (project checkpoints: the teacher for iBOT / DINO / MST, the encoder for MAE /
            SimMIM / LUT; other files: the teacher, as DINO / iBOT evaluate).
        num_heads: attention heads, when the file cannot tell (see the module docstring).
        expect: constructor arguments the caller requires (e.g. ``{"embed_dim": 384}``); a
            checkpoint of another architecture is refused with one line.

    Returns:
        :class:`LoadedBackbone` with the model in eval mode on CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, no ViT weights, or an architecture mismatch.
    """
    if which not in ("teacher", "student", None):
        raise ValueError(f"which must be 'teacher' or 'student', got {which!r}")
    if num_heads is not None and num_heads < 1:
        raise ValueError(f"--num-heads must be >= 1, got {num_heads}")
    file = resolve_checkpoint(path)
    checkpoint = read_checkpoint(file)
    state, layout, branch, config = _select(checkpoint, which)
    state, dropped = _rename(state)
    kwargs = vit_kwargs_from_state_dict(state, num_heads or _known_heads(file, config))
    for key, value in (expect or {}).items():
        if kwargs.get(key) != value:
            raise ValueError(
                f"{file} holds a ViT with {key}={kwargs.get(key)!r}, expected "
                f"{value!r}; pass a checkpoint of that architecture"
            )
    _refuse_nonfinite(state, file)
    model = VisionTransformer(**kwargs)
    _load_into(model, state, file)
    layout = "safetensors" if file.suffix == ".safetensors" else layout
    return LoadedBackbone(model.eval(), file, layout, branch, kwargs, config, dropped)
