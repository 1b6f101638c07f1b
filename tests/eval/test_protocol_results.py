"""The protocol functions on a tiny session: each returns a :class:`ProtocolResult`, and the
robustness record names its classifier (not a variant folder) when variants are evaluated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attmask.eval.config import FewShotConfig, KnnConfig, LinearEvalConfig, RetrievalConfig, RobustnessConfig
from attmask.eval.protocols import (
    ProtocolResult,
    fewshot_protocol,
    knn_protocol,
    linear_protocol,
    retrieval_protocol,
    robustness_protocol,
)
from attmask.eval.session import DataOptions, EvalSession
from attmask.models import VisionTransformer
from attmask.models.checkpoints import load_backbone

CLASSES = ("cat", "dog")


def _folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for image in range(per_class):
            pixels = rng.integers(0, 60, (16, 16, 3)) + 150 * index  # the classes differ in brightness
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{image}.png")
    return root


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> EvalSession:
    root = tmp_path_factory.mktemp("protocols")
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    torch.save(model.state_dict(), root / "c.pth")
    data = DataOptions(
        source=str(_folder(root / "train", 10, 0)),
        test_source=str(_folder(root / "test", 4, 1)),
        batch_size=8,
        num_workers=0,
    )
    return EvalSession(load_backbone(root / "c.pth", num_heads=2), data)


def test_robustness_names_the_classifier_not_a_variant(session: EvalSession, tmp_path: Path) -> None:
    variants = {"bright": str(_folder(tmp_path / "bright", 2, 2)), "other": str(_folder(tmp_path / "other", 2, 3))}
    outcome = robustness_protocol(session, RobustnessConfig(ratios=[0.0, 0.5], k=5), variants=variants)
    assert isinstance(outcome, ProtocolResult)
    assert outcome.record["classifier"] == "5-NN" and outcome.summary.startswith("5-NN top-1")
    assert list(outcome.record["variants"]) == ["bright", "other"] and ", other: " in outcome.summary
    probe = robustness_protocol(
        session,
        RobustnessConfig(ratios=[0.0], classifier="linear"),
        LinearEvalConfig(epochs=2, base_lr=1.0),
        variants=variants,
    )
    assert probe.record["classifier"] == "linear probe" and probe.summary.startswith("linear probe top-1")


def test_every_frozen_protocol_returns_its_result(session: EvalSession) -> None:
    outcomes = [
        knn_protocol(session, KnnConfig(ks=[1, 5])),
        fewshot_protocol(session, FewShotConfig(shots=[1, 2], repeats=2)),
        retrieval_protocol(session, RetrievalConfig(ks=[1, 2])),
        linear_protocol(session, LinearEvalConfig(epochs=2, base_lr=1.0)),
    ]
    assert [type(outcome) for outcome in outcomes] == [ProtocolResult] * 4
    protocols = [outcome.record["protocol"] for outcome in outcomes]
    assert protocols == ["knn", "fewshot", "retrieval", "linear"]
    assert all(isinstance(outcome.summary, str) and "\n" not in outcome.summary for outcome in outcomes)
    assert list(outcomes[0].record["results"]) == ["1", "5"] and outcomes[3].record["config"]["mode"] == "fast"
