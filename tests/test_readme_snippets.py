"""The README's Python examples run as written: a user who copies one gets what the README says.

Each ```python block is executed; only what a reader must supply is supplied (``images`` and
``B`` where the text leaves them to the reader; a temporary folder for ``out/run``; the repository
path for ``path/to/attmask``) and the training example is shortened with overrides of the tiny
test config, so the suite stays fast."""

from __future__ import annotations

import re

import torch

from tests.conftest import REPO_ROOT

BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return [re.sub(rf"^{indent}", "", body, flags=re.MULTILINE) for indent, body in BLOCK.findall(text)]


def _block_with(name: str) -> str:
    found = [block for block in _blocks() if name in block]
    assert len(found) == 1, f"one README example uses {name}, found {len(found)}"
    return found[0]


def test_the_readme_has_its_examples() -> None:
    assert len(_blocks()) == 4


def test_backbone_and_masking_examples_run_and_give_the_shapes_they_state() -> None:
    namespace = {"images": torch.randn(2, 3, 224, 224), "B": 2}
    exec(_block_with("build_vit("), namespace)  # noqa: S102 - the README's own code
    out = namespace["out"]
    assert out.cls_token.shape == (2, 384) and out.patch_tokens.shape == (2, 196, 384)
    assert out.cls_attention.shape == (2, 6, 196)
    exec(_block_with("build_masking("), namespace)  # noqa: S102
    for name in ("mask", "hint", "block"):
        assert namespace[name].shape == (2, 196) and namespace[name].dtype == torch.bool
    assert namespace["ratios"].shape == (2,)


def test_the_monitors_example_trains_with_callbacks(tmp_path, monkeypatch) -> None:
    code = _block_with("build_monitors(")
    fast = ["train.max_steps_per_epoch=1", "data.batch_size=8", "data.num_workers=0", "train.progress=false"]
    fast += ["train.knn_every_epochs=0", "train.knn_baseline=false", "train.figures_every_epochs=0"]
    code = code.replace('["optim.epochs=2"]', repr([*fast, "optim.epochs=2"])).replace('"out/run"', repr(str(tmp_path)))
    monkeypatch.chdir(REPO_ROOT)  # the example's config path is relative to the repository
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102
    assert namespace["summary"]["epoch"] == 1 and (tmp_path / "checkpoint.pth").is_file()


def test_the_torch_hub_example_loads_a_run(tmp_path) -> None:
    from attmask.engine.trainer import Trainer
    from tests.engine.tiny import tiny_config

    Trainer(tiny_config("optim.epochs=1"), tmp_path / "x").fit()
    code = _block_with("torch.hub.load(").replace('"path/to/attmask"', repr(str(REPO_ROOT)))
    code = code.replace('"runs/x"', repr(str(tmp_path / "x")))
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102
    assert namespace["model"](torch.randn(1, 3, 16, 16)).cls_token.shape == (1, 192)
    assert sum(p.numel() for p in namespace["vit_s"].parameters()) > 20_000_000
