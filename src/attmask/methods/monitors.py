"""Collapse monitors of self-distillation, logged every step (DINO Sec. 5.3, Fig. 7).

Two failure modes threaten DINO/iBOT: every image mapped to one prototype (one-hot collapse:
teacher entropy -> 0) and every image mapped to the same output, which centring turns into a
uniform target (uniform collapse: teacher entropy -> log K, KL to the centre -> 0, backbone
features identical across the batch: feature std -> 0). The entropy of the batch-averaged
teacher distribution tells how many prototypes the batch uses: log K when images spread over all
of them (healthy when each image's own entropy is low), near 0 when every image picks the same one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Fraction of log K above which the teacher's targets count as uniform (and below which, for the
#: batch-mean distribution, as one prototype for everything).
COLLAPSE_FRACTION = 0.85


@torch.no_grad()
def collapse_monitors(
    teacher_logits: torch.Tensor, centre: torch.Tensor, temperature: float, embedding: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Detached scalars describing the teacher's [CLS] outputs of one step.

    Args:
        teacher_logits: ``(R, K)`` teacher head outputs (before centring).
        centre: ``(1, K)`` the centre used by this step's loss (before its update).
        temperature: this step's teacher temperature.
        embedding: ``(R, D)`` teacher backbone [CLS] tokens, or None.

    Returns:
        ``teacher_entropy``: mean entropy (nats) of ``softmax((t - c) / T)``, in ``[0, log K]``;
        ``teacher_batch_entropy``: entropy of the batch mean of those distributions, in
        ``[teacher_entropy, log K]`` (prototype usage: ``exp`` of it is the effective number used);
        ``teacher_kl_centre``: mean ``KL(softmax(t / T) || softmax(c / T))``, 0 when every output
        equals the centre; ``feature_std`` (with ``embedding``): per-dimension standard deviation
        across the batch of the L2-normalised embeddings, averaged over dimensions (about
        ``1 / sqrt(D)`` for well spread features, 0 for identical ones).
    """
    logits, centre = teacher_logits.float(), centre.float()
    log_probs = F.log_softmax((logits - centre) / temperature, dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).sum(-1).mean()
    usage = probs.mean(0)
    batch_entropy = -(usage * usage.clamp_min(1e-30).log()).sum()
    raw = F.log_softmax(logits / temperature, dim=-1)
    centre_log = F.log_softmax(centre / temperature, dim=-1)
    kl = (raw.exp() * (raw - centre_log)).sum(-1).mean()
    logs = {"teacher_entropy": entropy, "teacher_batch_entropy": batch_entropy, "teacher_kl_centre": kl}
    if embedding is not None and embedding.shape[0] > 1:
        logs["feature_std"] = F.normalize(embedding.float(), dim=-1).std(dim=0).mean()
    return logs


def collapse_warning(
    entropy: float, batch_entropy: float, num_prototypes: int, fraction: float = COLLAPSE_FRACTION
) -> str | None:
    """One line naming a collapse the logged monitors show, with what to change; None if healthy.

    Args:
        entropy: ``teacher_entropy`` (nats).
        batch_entropy: ``teacher_batch_entropy`` (nats).
        num_prototypes: K, the head's output dimension.
        fraction: uniform collapse when ``entropy >= fraction * log K``; one-hot collapse when
            ``batch_entropy <= (1 - fraction) * log K``.
    """
    log_k = math.log(num_prototypes)
    if entropy >= fraction * log_k:
        return (
            f"teacher targets are close to uniform (entropy {entropy:.2f} of log K = {log_k:.2f} nats): "
            "the run is collapsing; lower loss.teacher_temp, keep the prototypes frozen longer "
            "(optim.freeze_last_layer_epochs) or slow them (optim.last_layer_lr_scale), or lower optim.lr"
        )
    if batch_entropy <= (1 - fraction) * log_k:
        return (
            f"the teacher sends every image to the same few prototypes (batch entropy {batch_entropy:.2f} of "
            f"log K = {log_k:.2f} nats): the run is collapsing; lower loss.center_momentum (the centre follows "
            "faster), raise loss.teacher_temp or use a larger data.batch_size"
        )
    return None
