"""The recipe search trains a recipe on the validation split, records it and tables it."""

from __future__ import annotations

import importlib.util
import json

import yaml

from tests.conftest import REPO_ROOT
from tests.engine.tiny import TINY


def _module():
    spec = importlib.util.spec_from_file_location("recipe_search", REPO_ROOT / "benchmarks" / "recipe_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_is_scored_on_the_validation_split_and_tabled(tmp_path, monkeypatch) -> None:
    search = _module()
    nested: dict = {}
    for item in TINY:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = yaml.safe_load(value)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(nested))
    monkeypatch.setattr(
        search,
        "PROTOCOL",
        ("data.val_images=40", "train.knn_every_epochs=1", "train.knn_baseline=true", "train.knn_train_samples=100"),
    )
    monkeypatch.setitem(search.RECIPES, "tiny_lr", ("lr 2e-3", ("optim.lr=2e-3",)))
    out, work = tmp_path / "results", tmp_path / "runs"
    assert search.main(["--only", "tiny_lr", "--base", str(base), "--out", str(out), "--work", str(work)]) == 0
    record = json.loads((out / "tiny_lr.json").read_text())
    assert record["returncode"] == 0 and record["overrides"] == ["optim.lr=2e-3"]
    assert [point["epoch"] for point in record["curve"]] == [0, 1]
    assert record["baseline"]["knn_split"] == "validation" and "knn_pixels_top1" in record["baseline"]
    assert not (work / "tiny_lr.claimed").exists()
    document = tmp_path / "recipes.md"
    document.write_text(f"intro\n{search.TABLE_START}\nold\n{search.TABLE_END}\nafter\n")
    search.write_table(out, document)
    text = document.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    row = next(line for line in text.splitlines() if line.startswith("| `tiny_lr`"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1] == "lr 2e-3" and cells[2] == "4"  # 2 epochs x 2 steps of 8 images
    assert float(cells[3]) == record["curve"][-1]["knn_top1"]


def test_a_recipe_may_name_its_own_base_preset() -> None:
    search = _module()
    assert search._base_of(("optim.lr=1",), "a.yaml") == ("a.yaml", ("optim.lr=1",))
    assert search._base_of(("--base-preset", "b.yaml", "optim.lr=1"), "a.yaml") == ("b.yaml", ("optim.lr=1",))
    for name, (_, overrides) in search.RECIPES.items():
        base, rest = search._base_of(overrides, search.DEMO)
        assert (REPO_ROOT / base).is_file(), name
        assert all("=" in item for item in rest), name
