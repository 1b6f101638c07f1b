"""The evaluation session under 2 gloo processes: disjoint shards, every image once, same features."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.multiprocessing as mp

from attmask.eval.session import DataOptions, EvalSession
from attmask.models import VisionTransformer
from attmask.models.checkpoints import load_backbone
from tests.conftest import free_port

OPTIONS = DataOptions(source="digits", img_size=16, batch_size=100, num_workers=0)


def _session(checkpoint: str, cache_dir: str | None = None) -> EvalSession:
    return EvalSession(
        load_backbone(checkpoint, num_heads=2), OPTIONS, cache_dir=None if cache_dir is None else Path(cache_dir)
    )


def _worker(rank: int, port: int, checkpoint: str, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:  # a cache dir is given but must not be used: ranks could disagree on hits
        torch.save(_session(checkpoint, f"{directory}/cache").features("test"), f"{directory}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _sorted(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.argsort(features[:, 0])
    return features[order], labels[order]


def test_two_ranks_give_the_single_process_features(tmp_path) -> None:
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    checkpoint = tmp_path / "c.pth"
    torch.save(model.state_dict(), checkpoint)
    mp.start_processes(
        _worker, args=(free_port(), str(checkpoint), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    expected = _sorted(*_session(str(checkpoint)).features("test"))
    assert expected[0].shape == (297, 32)
    for rank in (0, 1):
        features, labels = torch.load(tmp_path / f"rank{rank}.pt")
        assert features.shape == (297, 32)  # each image exactly once, no padding repeats
        got = _sorted(features, labels)
        torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(got[1], expected[1])
    assert not (tmp_path / "cache").exists()
