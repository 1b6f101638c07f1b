"""Collapse monitors of self-distillation, logged every step (DINO Sec. 5.3, Fig. 7).

Two failure modes threaten DINO/iBOT: every image mapped to one prototype (one-hot collapse:
teacher entropy -> 0) and every image mapped to the same output, which centring turns into a
uniform target (uniform collapse: teacher entropy -> log K, KL to the centre -> 0, backbone
features identical across the batch: feature std -> 0). The entropy of the batch-averaged
teacher distribution tells how many prototypes the batch uses: log K when images spread over all
of them (healthy when each image's own entropy is low), near 0 when every image picks the same one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def collapse_monitors(teacher_logits: torch.Tensor, centre: torch.Tensor, temperature: float,
                      embedding: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
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
