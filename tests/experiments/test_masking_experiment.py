"""The masking ablation: config and cell plan, aggregation, resumable cells, CLI end to end."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from attmask.cli.main import main
from attmask.config import ConfigError, load_config
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.experiments import ARMS, Cell, ExperimentConfig, load_experiment, plan_cells
from attmask.experiments.cells import Evaluator, evaluate_features, evaluate_pixels, initial_backbone, standardize
from attmask.experiments.config import EvalSpec, TableSpec, arm_notes
from attmask.experiments.report import data_text, main_table_markdown, progress_text
from attmask.experiments.stored import cached_result
from attmask.experiments.summary import stats, summarize
from tests.engine.tiny import TINY, tiny_config

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "experiments"


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.name)
def test_presets_load_and_resolve_their_pretraining_preset(path: Path) -> None:
    config, preset = load_experiment(path)
    assert preset.is_file()
    pretrain = load_config(preset, config.pretrain.overrides)
    assert pretrain.train.method == "ibot"
    if path.name == "masking_gpu_short.yaml":  # the few-minute GPU session: a subset, one seed
        assert {"block", "attmask_high"} <= set(config.arms) <= set(ARMS) and pretrain.data.augment_on == "device"
        return
    if path.name == "masking_cpu_v2.yaml":  # Hint only where it can differ from High: the 7x7 table
        assert set(config.arms) == set(ARMS) - {"none", "attmask_hint"}
        assert config.fine_grid.arms == ["attmask_hint", "attmask_high"] and len(config.seeds) == 3
        return
    assert set(config.arms) == set(ARMS) - {"none"}, "the presets run every arm of Table 1"
    assert len(config.seeds) == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["arms=[block, attmask_top]"], "unknown arm 'attmask_top' in arms"),
        (["curve_arms=[bogus]"], "unknown arm 'bogus' in curve_arms"),
        (["fractions=[0.0]"], r"fractions must lie in \(0, 1\]"),
        (["seeds=[1, 1]"], "seeds must be distinct"),
        (["seeds=[]"], "at least one arm and one seed"),
        (["eval.knn_kk=3"], "unknown config key eval.knn_kk"),
        (["seeds=[a]"], "config key seeds expects int"),
        (["pretrain.config=missing.yaml"], "pretraining preset missing.yaml not found"),
    ],
)
def test_bad_experiment_settings_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment(PRESETS / "masking_cpu.yaml", overrides)


def test_plan_shares_the_main_fraction_with_the_sweep() -> None:
    config = ExperimentConfig(
        arms=["block", "random", "attmask_high"],
        seeds=[3, 4],
        fractions=[0.01, 0.05],
        fraction_arms=["block", "attmask_high"],
        fraction_seeds=1,
    )
    plan = plan_cells(config, 0.05)
    main_cells, sweep = plan.main, plan.sweep
    assert [(c.seed, c.arm) for c in main_cells[:3]] == [(3, "block"), (3, "random"), (3, "attmask_high")]
    assert len(main_cells) == 6 and all(c.subset == 0.05 for c in main_cells)
    assert sweep == [Cell("block", 3, 0.01), Cell("attmask_high", 3, 0.01)], "0.05 reuses the main cells"
    whole_set = ExperimentConfig(arms=["block"], seeds=[0], fractions=[0.5, 1.0], fraction_arms=["block"])
    whole = plan_cells(whole_set, None).sweep
    assert whole == [Cell("block", 0, 0.5)], "1.0 is the main cells' whole training set"


@pytest.mark.parametrize("arm", list(ARMS))
def test_cells_differ_only_in_masking_seed_and_data(arm: str) -> None:
    cell = Cell(arm, 7, 0.5)
    config = tiny_config(*cell.overrides())
    _, strategy, ratio = ARMS[arm]
    assert (config.masking.strategy, config.masking.ratio) == (strategy, ratio)
    assert config.train.seed == 7 and config.data.subset == 0.5
    reference = tiny_config(*Cell("block", 7, 0.5).overrides())
    assert config.optim == reference.optim and config.model == reference.model
    assert config.masking.probability == reference.masking.probability


def test_initial_backbone_is_the_trainers_starting_teacher_for_every_arm(tmp_path) -> None:
    config = tiny_config(*Cell("attmask_high", 5, None).overrides())
    trainer = Trainer(config, tmp_path / "run")
    expected = trainer.method.teacher.backbone.state_dict()
    for arm in ("attmask_high", "block"):
        built = initial_backbone(tiny_config(*Cell(arm, 5, None).overrides())).state_dict()
        assert all(torch.equal(built[k], expected[k]) for k in expected)
    other_seed = initial_backbone(tiny_config(*Cell("block", 6, None).overrides())).state_dict()
    assert not all(torch.equal(other_seed[k], expected[k]) for k in expected)


def test_cell_label_names_the_table_arm_seed_and_data() -> None:
    assert Cell("block", 0, None).label(13) == "Block-wise 10-50%, seed 0, data all, 13 epochs"
    assert Cell("attmask_high", 1, 0.5, "dino").label(3) == "dino AttMask-High, seed 1, data 0.5, 3 epochs"


def test_report_names_the_whole_training_set_and_a_finished_run_has_no_progress_line() -> None:
    assert data_text(None, 60000) == "the whole training set (60000 images)"
    assert data_text(None, None) == "the whole training set"
    assert data_text(0.1, 6000) == "data.subset 0.1 (6000 images)"
    assert progress_text({"done": 5, "total": 5, "left": [], "time_left": "0 cells"}) == []


def test_hint_on_a_tiny_grid_is_flagged() -> None:
    (note,) = arm_notes(["attmask_high", "attmask_hint"], 16, (0.01, 0.05))
    assert "floor(16 x s) = 0 tokens" in note and "exactly AttMask-High" in note
    assert arm_notes(["attmask_hint"], 49, (0.01, 0.05)) == [], "floor(49 x 0.05) = 2 hints"
    assert arm_notes(["attmask_high"], 16, (0.01, 0.05)) == []
    (left_out,) = arm_notes(["attmask_high"], 16, (0.01, 0.05), hint_on_finer_grid=True)
    assert left_out.startswith("AttMask-Hint is not run on this grid") and "floor(16 x s) = 0" in left_out
    assert arm_notes(["attmask_high"], 49, (0.01, 0.05), hint_on_finer_grid=True) == []


def test_stats_are_mean_and_sample_std() -> None:
    assert stats([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3, "values": [1.0, 2.0, 3.0]}
    assert stats([4.0])["std"] == 0.0 and stats([])["mean"] is None


def test_standardize_uses_train_statistics_and_keeps_inputs() -> None:
    train = torch.tensor([[1.0, 10.0], [3.0, 10.0]])
    test = torch.tensor([[2.0, 11.0]])
    before = train.clone()
    a, b = standardize(train, test)
    assert torch.equal(train, before)
    assert torch.allclose(a[:, 0], torch.tensor([-0.7071, 0.7071]), atol=1e-4)
    assert b[0, 0] == 0 and b[0, 1] > 1e5, "a constant train feature is scaled by the floor, not by 0"


def test_evaluate_features_on_separable_and_random_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(30)
    centres = torch.randn(4, 16, generator=generator) * 5
    features = centres[labels] + 0.1 * torch.randn(120, 16, generator=generator)
    spec = EvalSpec(shots=[1, 5], fewshot_repeats=2, linear_epochs=20, knn_k=5)
    result = evaluate_features(features[::2], labels[::2], features[1::2], labels[1::2], 4, spec)
    assert result["knn_top1"] == 100.0 and result["linear_top1"] == 100.0
    assert result["fewshot"] == {"1": 100.0, "5": 100.0}
    noise = torch.randn(120, 16, generator=generator)
    chance = evaluate_features(noise[::2], labels[::2], noise[1::2], labels[1::2], 4, spec)
    assert chance["knn_top1"] < 50.0 and chance["linear_top1"] < 50.0


def test_cached_result_computes_once_and_refuses_other_settings(tmp_path) -> None:
    calls = []

    def compute():
        calls.append(1)
        return {"metrics": {"knn_top1": 1.0}}

    path = tmp_path / "cells" / "a.json"
    first, computed = cached_result(path, {"optim": {"lr": 1}}, compute)
    again, computed_again = cached_result(path, {"optim": {"lr": 1}}, compute)
    assert computed and not computed_again and len(calls) == 1 and again == first
    with pytest.raises(ConfigError, match=r"computed with other settings \(changed: optim.lr\)"):
        cached_result(path, {"optim": {"lr": 2}}, compute)
    with pytest.raises(ConfigError, match=r"\(changed: optim.wd\)"):  # a key the stored settings lack
        cached_result(path, {"optim": {"lr": 1, "wd": 0}}, compute)
    path.write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        cached_result(path, {"optim": {"lr": 1}}, compute)


def test_result_changes_ignore_only_how_a_cell_ran() -> None:
    from attmask.experiments.stored import result_changes

    stored = {"train": {"num_threads": 2, "seed": 0, "knn_k": 20}, "data": {"data_dir": "/a", "num_workers": 1}}
    moved = {"train": {"num_threads": 1, "seed": 0, "knn_k": 20}, "data": {"data_dir": "/b", "num_workers": 0}}
    assert result_changes(stored, moved) == []
    assert result_changes(stored, {**moved, "train": {"num_threads": 1, "seed": 1, "knn_k": 10}}) == [
        "train.knn_k",  # the k-NN monitor's k changes the stored curve
        "train.seed",
    ]


def _fake(knn: float, linear: float, curve=(), images: int = 100) -> dict:
    return {
        "metrics": {"knn_top1": knn, "linear_top1": linear, "fewshot": {"1": knn / 2}},
        "curve": [list(p) for p in curve],
        "train_images": images,
        "steps": 4,
        "seconds": {"pretrain": 30.0, "evaluate": 30.0},
        "resumed": False,
    }


def test_summary_tables_pair_arms_by_seed() -> None:
    config = ExperimentConfig(
        arms=["block", "attmask_high"],
        seeds=[0, 1],
        curve_arms=["attmask_high"],
        fractions=[0.1],
        fraction_seeds=2,
        eval=EvalSpec(shots=[1]),
    )
    plan = plan_cells(config, 0.5)
    results = {
        Cell("block", 0, 0.5): _fake(60, 70),
        Cell("attmask_high", 0, 0.5): _fake(62, 71, [(1, 55), (2, 62)]),
        Cell("block", 1, 0.5): _fake(50, 60),
        Cell("attmask_high", 1, 0.5): _fake(51, 63, [(1, 45), (2, 52)]),
        Cell("attmask_high", 0, 0.1): _fake(40, 45, images=20),
    }
    inits = {0: {**_fake(40, 41), "curve": [[0, 30.0]]}, 1: {**_fake(42, 43), "curve": [[0, 32.0]]}}
    summary = summarize(config, {"": inits}, results, plan)
    high = summary["main_table"]["attmask_high"]
    assert high["knn_top1"]["mean"] == 56.5 and high["fewshot.1"]["mean"] == 28.25
    delta = summary["paired"]["attmask_high"]
    assert delta["knn_top1"]["values"] == [2.0, 1.0] and delta["linear_top1"]["mean"] == 2.0
    assert summary["curves"]["attmask_high"]["epochs"] == [0, 1, 2]
    assert summary["curves"]["attmask_high"]["mean"] == [31.0, 50.0, 57.0]
    fraction = summary["fractions"]["attmask_high"]["0.1"]
    assert fraction["knn_top1"]["n"] == 1 and fraction["images"] == 20
    assert summary["fractions"]["block"]["0.1"]["knn_top1"]["n"] == 0, "missing cells are left out"
    assert summary["fractions"]["block"]["0.5"]["knn_top1"]["values"] == [60.0, 50.0], "main cells give 50%"
    assert summary["compute_seconds"] == 7 * 60
    assert summary["fraction_baseline"]["knn_top1"]["values"] == [40.0, 42.0], "fraction seeds 0 and 1"
    lines = main_table_markdown(summary)
    assert lines[0] == (
        "| Masking | n | 20-NN | 1-shot | Linear | Δ k-NN vs Block-wise 10-50% | Δ linear vs Block-wise 10-50% |"
    )
    # paired 95% interval, t(0.975, 1 dof) = 12.706: 1.5 -+ 12.706 * 0.7071 / sqrt(2)
    high_row = "| AttMask-High | 2 | 56.50 ± 7.78 | 28.25 ± 3.89 | 67.00 ± 5.66 | "
    assert high_row + "+1.50 [-4.85, +7.85] | +2.00 [-10.71, +14.71] |" in lines
    assert lines[2].startswith("| Random init (no pretraining) | 2 | 41.00 ± 1.41")


def _experiment_file(tmp_path: Path) -> Path:
    (tmp_path / "recipe.yaml").write_text("{}\n")
    overrides = [
        *TINY,
        "optim.epochs=2",
        "train.knn_every_epochs=1",
        "train.knn_train_samples=200",
        "train.knn_test_samples=100",
        "data.subset=0.5",
    ]
    spec = {
        "pretrain": {"config": "recipe.yaml", "overrides": overrides},
        "arms": ["block", "attmask_high"],
        "seeds": [0],
        "fractions": [0.25],
        "eval": {"train_per_class": 30, "shots": [1, 2], "fewshot_repeats": 2, "linear_epochs": 3, "num_workers": 0},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cli_runs_resumes_and_reports(tmp_path, capsys) -> None:
    preset, out = _experiment_file(tmp_path), tmp_path / "out"
    arguments = ["experiment", "masking", "--preset", str(preset), "--out", str(out)]
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert text.count("done in") == 6, text  # pixels + init + 2 main cells + 2 sweep cells
    assert text.splitlines()[1] == "[1/6] raw pixels ..."
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == [
        "attmask_high-s0-d0.25.json",
        "attmask_high-s0-d0.5.json",
        "block-s0-d0.25.json",
        "block-s0-d0.5.json",
        "init-s0.json",
        "pixels.json",
    ]
    stored = json.loads((out / "cells" / "attmask_high-s0-d0.5.json").read_text())
    assert stored["steps"] == 4 and [p[0] for p in stored["curve"]] == [1, 2]
    assert stored["settings"]["masking"]["strategy"] == "attmask_high"
    assert [(s["from_step"], s["commit"]) for s in stored["segments"]] == [(0, stored["commit"])]
    report = (out / "results.md").read_text()
    assert "| AttMask-High | 1 |" in report and "| Block-wise 10-50% | 1 |" in report
    assert "25% (" in report and "50% (" in report
    figures = {"knn_vs_epoch.png", "data_fraction.png", "main_table.png", "paired_delta.png"}
    assert {p.name for p in (out / "figures").iterdir()} == figures
    assert "![paired differences](figures/paired_delta.png)" in report
    summary = json.loads((out / "results.json").read_text())
    assert summary["main_table"]["attmask_high"]["knn_top1"]["values"] == [stored["metrics"]["knn_top1"]]
    assert summary["cells"]["attmask_high-s0-d0.5"]["segments"] == stored["segments"]
    assert 0.0 <= stored["stalled_seconds"] <= stored["seconds"]["pretrain"]
    assert summary["cells"]["attmask_high-s0-d0.5"]["stalled_seconds"] == stored["stalled_seconds"]
    pixels = json.loads((out / "cells" / "pixels.json").read_text())
    assert pixels["settings"]["data"]["img_size"] == 16 and "optim" not in pixels["settings"]
    assert summary["main_table"]["pixels"]["knn_top1"]["values"] == [pixels["metrics"]["knn_top1"]]
    assert list(summary["main_table"])[:2] == ["pixels", "random_init"]
    assert f"| Raw pixels (no network) | 1 | {pixels['metrics']['knn_top1']:.2f} |" in report

    # a second run recomputes nothing; a deleted result re-evaluates the finished run without training
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    os.remove(out / "cells" / "block-s0-d0.5.json")
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert text.count("already done") == 5 and text.count("done in") == 1
    again = json.loads((out / "cells" / "block-s0-d0.5.json").read_text())
    assert again["resumed"] and again["steps"] == 4
    assert [s["from_step"] for s in again["segments"]] == [0, 4], "the evaluating process is a segment too"
    logged = [r["train_seconds"] for r in read_log(out / "runs" / "block-s0-d0.5") if "train_seconds" in r]
    assert again["seconds"]["pretrain"] >= max(logged) > 0, "a resumed cell keeps its earlier processes' time"
    unchanged = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir() if p.name != "block-s0-d0.5.json"}
    assert all(stamps[name] == stamp for name, stamp in unchanged.items())

    assert main([*arguments, "--status"]) == 0
    assert [line.split() for line in capsys.readouterr().out.splitlines()[:2]] == [
        ["done", "pixels"],
        ["done", "init-s0"],
    ]
    assert "Partial results" not in report
    os.remove(out / "results.md")
    os.remove(out / "cells" / "block-s0-d0.25.json")
    assert main([*arguments, "--report-only"]) == 0
    partial = (out / "results.md").read_text()
    assert "| AttMask-High | 1 |" in partial
    assert "**Partial results: 5 of 6 cells finished.** Left: `block-s0-d0.25`." in partial
    assert json.loads((out / "results.json").read_text())["progress"]["left"] == ["block-s0-d0.25"]


def test_cli_refuses_changed_settings_and_bad_input(tmp_path, capsys) -> None:
    preset, out = _experiment_file(tmp_path), tmp_path / "out"
    arguments = ["experiment", "masking", "--preset", str(preset), "--out", str(out)]
    assert main([*arguments, "--set", "arms=[block]", "--set", "fractions=[]", "--set", "pixels=false"]) == 0
    assert "raw pixels" not in capsys.readouterr().out
    assert not (out / "cells" / "pixels.json").exists(), "pixels=false: no raw-pixel row"
    assert main([*arguments, "--set", "arms=[block]", "--pretrain-set", "optim.lr=0.5"]) == 2
    assert "computed with other settings (changed: optim.lr)" in capsys.readouterr().err
    machine = [
        "--pretrain-set",
        "train.num_threads=1",
        "--pretrain-set",
        "data.num_workers=0",
        "--set",
        "eval.num_workers=0",
    ]
    assert main([*arguments, "--set", "arms=[block]", *machine]) == 0, "threads and workers change no result"
    assert "(already done)" in capsys.readouterr().out
    assert main(["experiment", "masking", "--preset", "nosuch", "--out", str(out)]) == 2
    assert "experiment file not found: configs/experiments/masking_nosuch.yaml" in capsys.readouterr().err
    assert main([*arguments, "--pretrain-set", "optim.lrr=1"]) == 2
    assert "unknown config key optim.lrr" in capsys.readouterr().err
    assert main([*arguments, "--data", str(tmp_path / "missing")]) == 2
    assert "data set path not found" in capsys.readouterr().err


def test_cli_refuses_torchrun(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["experiment", "masking", "--preset", "cpu", "--out", str(tmp_path)]) == 2
    assert "start it without torchrun" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_interval_is_the_t_interval_of_the_mean() -> None:
    from attmask.experiments.summary import interval

    found = interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4 dof) * std / sqrt(n)
    assert found["mean"] == 3.0 and abs(found["low"] - (3 - half)) < 1e-6 and abs(found["high"] - (3 + half)) < 1e-6
    assert interval([2.0])["low"] is None and interval([])["n"] == 0


def test_delta_text_marks_intervals_that_exclude_zero() -> None:
    from attmask.experiments.report import delta_text
    from attmask.experiments.summary import interval

    assert delta_text(interval([1.0, 1.2, 1.1])) == "**+1.10 [+0.85, +1.35]**"
    assert delta_text(interval([1.0, -1.0])).startswith("+0.00 [-12.71, +12.71]")
    assert delta_text(interval([0.4])) == "+0.40 (n=1)"


def test_reach_finds_the_first_epoch_at_the_reference_final_level() -> None:
    from attmask.experiments.summary import reach

    curves = {
        "block": {"epochs": [0, 1, 2, 3], "mean": [50.0, 60.0, 64.0, 66.0]},
        "attmask_high": {"epochs": [0, 1, 2, 3], "mean": [50.0, 63.0, 66.0, 67.0]},
        "random": {"epochs": [0, 1, 2, 3], "mean": [50.0, 55.0, 60.0, 65.9]},
    }
    found = reach(curves, "block")
    assert found == {
        "reference": "block",
        "final": 66.0,
        "final_epoch": 3,
        "epochs": {"attmask_high": 2, "random": None},
    }
    assert reach({"block": {"epochs": [], "mean": []}}, "block") == {}


def test_extra_tables_plan_their_own_cells_with_their_overrides() -> None:
    config = ExperimentConfig(
        arms=["block", "attmask_high"],
        seeds=[0, 1, 2],
        dino=TableSpec(["none", "attmask_high"], [0, 1], "none", ["train.method=dino"]),
        fine_grid=TableSpec(["attmask_hint", "attmask_high"], [0], overrides=["model.patch_size=4"]),
    )
    plan = plan_cells(config, None)
    assert [c.name for c in plan.tables["dino"]] == [
        "dino-none-s0-dall",
        "dino-attmask_high-s0-dall",
        "dino-none-s1-dall",
        "dino-attmask_high-s1-dall",
    ]
    assert [c.name for c in plan.tables["grid"]] == ["grid-attmask_hint-s0-dall", "grid-attmask_high-s0-dall"]
    assert len(plan.all()) == 6 + 4 + 2 and plan.all()[:6] == plan.main
    dino = tiny_config(*plan.tables["dino"][1].overrides())
    assert dino.train.method == "dino" and dino.masking.strategy == "attmask_high"
    assert tiny_config(*plan.tables["dino"][0].overrides()).masking.strategy == "none"
    assert plan.main[0].name == "block-s0-dall", "main cells keep the names of the first run"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dino": {"arms": ["nope"]}}, "unknown arm 'nope' in dino.arms"),
        ({"dino": {"arms": ["none"], "baseline": "block"}}, "dino.baseline 'block' is not one of its arms"),
        ({"baseline": "rnd"}, "unknown arm 'rnd' in baseline"),
        ({"fine_grid": {"arms": ["attmask_hint"], "seeds": [1, 1]}}, "fine_grid.seeds must be distinct"),
        ({"eval": {"features": ["last4"]}}, "eval.features takes cls, gap or cls"),
    ],
)
def test_bad_extra_tables_are_one_line(values: dict, message: str) -> None:
    from attmask.config import from_dict

    with pytest.raises(ConfigError, match=message):
        from_dict(ExperimentConfig, {"arms": ["block", "attmask_high"], **values})


def test_gap_columns_read_the_nested_metrics() -> None:
    from attmask.experiments.summary import metric, metric_columns, paired_columns

    config = ExperimentConfig(eval=EvalSpec(shots=[5], features=["cls", "gap"]))
    assert [t for _, t in metric_columns(config)] == ["20-NN", "5-shot", "Linear", "GAP 20-NN", "GAP linear"]
    assert [k for k, _ in paired_columns(config)] == ["knn_top1", "linear_top1", "gap.knn_top1"]
    metrics = {"knn_top1": 1.0, "fewshot": {"5": 2.0}, "gap": {"knn_top1": 3.0, "fewshot": {"5": 4.0}}}
    assert [metric(metrics, k) for k in ("knn_top1", "fewshot.5", "gap.knn_top1", "gap.fewshot.5")] == [1, 2, 3, 4]


def test_settings_key_of_the_first_run_is_unchanged_by_the_features_setting() -> None:
    from attmask.experiments.stored import settings_key

    config = tiny_config()
    assert "features" not in settings_key(config, EvalSpec())["eval"]
    assert settings_key(config, EvalSpec(features=["cls", "gap"]))["eval"]["features"] == ["cls", "gap"]


def test_time_left_uses_the_median_of_the_same_tables_finished_cells(tmp_path) -> None:
    from attmask.experiments import MaskingExperiment

    config = ExperimentConfig(
        arms=["block", "attmask_high"],
        seeds=[0, 1],
        dino=TableSpec(["none", "attmask_high"], [0], overrides=["train.method=dino"]),
        fine_grid=TableSpec(["attmask_hint"], [0]),
    )
    preset = tmp_path / "recipe.yaml"
    preset.write_text("{}\n")
    experiment = MaskingExperiment(config, preset, tmp_path / "out")
    assert experiment.time_left().seconds is None and experiment.time_left().pending == 7
    cells = tmp_path / "out" / "cells"
    cells.mkdir(parents=True)
    # block-s1's stored time holds a pause of the run: the median keeps it out of the estimate
    timed = {"block-s0-dall": 100.0, "attmask_high-s0-dall": 120.0, "block-s1-dall": 900.0, "dino-none-s0-dall": 60.0}
    for name, seconds in timed.items():
        (cells / f"{name}.json").write_text(json.dumps({"seconds": {"pretrain": seconds - 10, "evaluate": 10.0}}))
    left = experiment.time_left()
    # 1 main cell at the main median (120 s), 1 DINO cell at 60 s, 1 grid cell at the median of all (110 s)
    assert (left.pending, left.timed, left.seconds) == (3, 4, 120 + 60 + 110)
    assert left.text() == "about 5 min for 3 cells (median of 4 timed cells, none on this device)"
    (cells / "block-s0-dall.json").write_text(
        json.dumps({"seconds": {"pretrain": 290.0}, "device": experiment.device()})
    )
    left = experiment.time_left()
    assert (left.timed, left.seconds, left.this_device) == (1, 3 * 290, True), "cells timed here come first"
    assert left.text().endswith("(median of 1 timed cell, on this device)")
    # a started cell (a checkpoint) whose log has reached 3/4 of its steps counts the quarter left
    run = tmp_path / "out" / "runs" / "attmask_high-s1-dall"
    run.mkdir(parents=True)
    epochs = experiment.pretrain_config().optim.epochs
    records = [{"epoch": 0, "step": 10, "epoch_done": True}, {"epoch": 0, "step": epochs * 10 * 3 // 4}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert experiment.time_left().seconds == 3 * 290, "a log without a checkpoint: the cell starts over"
    (run / "checkpoint.pth").write_bytes(b"")
    assert experiment.time_left().seconds == pytest.approx(2 * 290 + 290 * (1 - (epochs * 10 * 3 // 4) / (epochs * 10)))


def test_time_left_leaves_out_the_stalls_a_cell_stored(tmp_path) -> None:
    from attmask.experiments import MaskingExperiment

    preset = tmp_path / "recipe.yaml"
    preset.write_text("{}\n")
    config = ExperimentConfig(arms=["block", "attmask_high"], seeds=[0])
    experiment = MaskingExperiment(config, preset, tmp_path / "out")
    cells = tmp_path / "out" / "cells"
    cells.mkdir(parents=True)
    stored = {"seconds": {"pretrain": 890.0, "evaluate": 10.0}, "stalled_seconds": 600.0, "device": experiment.device()}
    (cells / "block-s0-dall.json").write_text(json.dumps(stored))
    assert experiment.time_left().seconds == 300.0, "paused 600 of its 900 s: the next cell takes about 300"
    del stored["stalled_seconds"]  # a cell stored before stalls were measured counts whole
    (cells / "block-s0-dall.json").write_text(json.dumps(stored))
    assert experiment.time_left().seconds == 900.0


def test_time_left_on_a_new_device_follows_the_pace_of_the_cell_running_here(tmp_path) -> None:
    from attmask.core.lock import file_lock
    from attmask.experiments import MaskingExperiment
    from attmask.experiments.progress import cell_lock

    preset = tmp_path / "recipe.yaml"
    preset.write_text("{}\n")
    experiment = MaskingExperiment(
        ExperimentConfig(arms=["block", "attmask_high"], seeds=[0]), preset, tmp_path / "out"
    )
    (tmp_path / "out" / "cells").mkdir(parents=True)
    stored = {"seconds": {"pretrain": 990.0, "evaluate": 10.0}, "steps": 500, "device": "cpu (elsewhere, 1 thread)"}
    (tmp_path / "out" / "cells" / "block-s0-dall.json").write_text(json.dumps(stored))  # 0.5 steps/s
    run = tmp_path / "out" / "runs" / "attmask_high-s0-dall"
    run.mkdir(parents=True)
    steps = [{"epoch": 0, "step": s, "images_per_second": 1.0, "train_seconds": s / 2} for s in (10, 20, 30)]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))  # 2 steps/s
    (run / "checkpoint.pth").write_bytes(b"")
    started = experiment.time_left()
    assert (started.seconds, started.speed) == (1000.0, None), "nobody trains it here: its old pace is no news"
    with file_lock(cell_lock(tmp_path / "out", "attmask_high-s0-dall"), "attmask experiment"):
        running = experiment.time_left()
    assert (running.seconds, running.speed) == (250.0, 4.0)


def test_estimate_prefers_cells_timed_on_the_same_device_and_threads() -> None:
    from attmask.experiments.progress import Estimate, PendingCell, TimedCell, estimate

    two, one = "cpu (X, 2 cores, 2 threads)", "cpu (X, 2 cores, 1 thread)"
    main_cell, dino, grid = PendingCell(""), PendingCell("dino"), PendingCell("grid")
    timed = [TimedCell("", two, 100.0), TimedCell("", two, 110.0), TimedCell("dino", two, 50.0)]
    assert estimate(timed, [main_cell, dino], two).seconds == 105 + 50
    assert estimate(timed, [main_cell, dino], one) == Estimate(155.0, 2, 3, this_device=False)
    lanes = [*timed, TimedCell("", one, 170.0), TimedCell("", one, 190.0)]
    found = estimate(lanes, [main_cell, dino, grid], one)
    assert (found.seconds, found.timed, found.this_device) == (3 * 180.0, 2, True), "other tables: this device's median"
    assert estimate([], [main_cell, main_cell], one).seconds is None
    assert estimate([], [main_cell, main_cell], one).pending == 2
    halfway = estimate(timed, [PendingCell("", left=0.5), dino], two)
    assert (halfway.seconds, halfway.pending) == (105 / 2 + 50, 2), "a cell in progress: the fraction its log has left"


def test_estimate_on_a_new_device_is_scaled_by_the_pace_of_the_cells_running_there() -> None:
    from attmask.experiments.progress import PendingCell, TimedCell, estimate

    old, new = "cpu (AMD, 2 cores, 1 thread)", "cpu (Intel, 2 cores, 1 thread)"
    timed = [
        TimedCell("", old, 1000.0, steps=800),
        TimedCell("", old, 1000.0, steps=800),
        TimedCell("grid", old, 400.0),
    ]
    running = PendingCell("", left=0.5, pace=1.6)  # twice the timed cells' 0.8 steps/s
    found = estimate(timed, [running, PendingCell(""), PendingCell("grid")], new)
    assert found.speed == 2.0 and found.seconds == (500 + 1000 + 400) / 2, "every table at the measured ratio"
    assert "none on this device, scaled by the running cells' pace: 2.00x theirs" in found.text()
    assert estimate(timed, [PendingCell(""), PendingCell("grid")], new).speed is None, "nothing runs here: unscaled"
    here = [*timed, TimedCell("", new, 600.0, steps=800)]
    assert estimate(here, [running], new) == estimate(here, [PendingCell("", left=0.5)], new), "timed here: not scaled"
    unknown = [TimedCell("", old, 1000.0)]  # stored without its steps
    assert estimate(unknown, [running], new).seconds == 500.0


def test_cli_runs_extra_tables_with_gap_features(tmp_path, capsys) -> None:
    path = _experiment_file(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec.update(
        arms=["attmask_high"],
        fractions=[],
        curve_arms=["attmask_high"],
        dino={
            "arms": ["none", "attmask_high"],
            "seeds": [0],
            "baseline": "none",
            "overrides": ["train.method=dino"],
            "title": "DINO",
        },
    )
    spec["eval"]["features"] = ["cls", "gap"]
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    arguments = ["experiment", "masking", "--preset", str(path), "--out", str(out)]
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert text.count("done in") == 6, text  # pixels, 2 inits, 3 cells
    assert re.search(r"expected pretraining time left: about \d+ min for 1 cell \(", text), text
    assert "random init of dino, seed 0" in text
    first_line = "6 cells in all; pretraining left: 3 cells, not yet timed (known after the first one)"
    assert text.splitlines()[0] == first_line
    stored = json.loads((out / "cells" / "dino-attmask_high-s0-d0.5.json").read_text())
    assert stored["settings"]["train"]["method"] == "dino" and set(stored["metrics"]["gap"]) >= {
        "knn_top1",
        "linear_top1",
    }
    gap, cls = stored["metrics"]["gap"], stored["metrics"]
    assert (gap["knn_top1"], gap["linear_top1"]) != (cls["knn_top1"], cls["linear_top1"]), "GAP is its own feature"
    report = (out / "results.md").read_text()
    assert "## DINO" in report and "| GAP 20-NN | GAP linear |" in report and "Δ GAP k-NN vs No masking" in report
    assert "| AttMask-High | 1 |" in report.split("## DINO")[1] and "(n=1)" in report
    assert (out / "cells" / "init-dino-s0.json").is_file()
    assert main([*arguments, "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["pixels", "init-s0", "init-dino-s0"]
    assert lines[-1] == "pretraining left: none, every cell is finished"


def test_curves_figure_marks_where_an_arm_reaches_the_reference(tmp_path) -> None:
    from attmask.experiments.figures import draw_curves
    from attmask.experiments.summary import reach

    epochs = list(range(5))
    curves = {
        "block": {"epochs": epochs, "mean": [60, 62, 64, 65, 66], "std": [0.5] * 5, "n": [2] * 5},
        "attmask_high": {"epochs": epochs, "mean": [60, 64, 66, 67, 68], "std": [0.5] * 5, "n": [2] * 5},
    }
    found = reach(curves, "block")
    assert found["epochs"] == {"attmask_high": 2}
    path = draw_curves(curves, tmp_path / "curves.png", found)
    assert path.is_file() and path.stat().st_size > 10_000


def test_paired_figure_draws_the_arms_with_differences(tmp_path) -> None:
    from attmask.experiments.figures import draw_paired, has_pairs

    def stat(values, low=None, high=None):
        mean = sum(values) / len(values) if values else None
        return {"values": values, "mean": mean, "low": low, "high": high, "n": len(values)}

    columns = [["knn_top1", "k-NN"], ["linear_top1", "linear"]]
    paired = {
        "random": {"knn_top1": stat([-1.4, -1.5, -0.7], -2.4, -0.1), "linear_top1": stat([-0.5, 0.1, -0.4], -1.1, 0.6)},
        "attmask_low": {"knn_top1": stat([0.8]), "linear_top1": stat([0.3])},
        "attmask_high": {"knn_top1": stat([]), "linear_top1": stat([])},
    }
    assert has_pairs(paired)
    path = draw_paired(paired, columns, "block", "Masking strategies", tmp_path / "delta.png")
    assert path.is_file() and path.stat().st_size > 10_000
    nothing = {arm: {key: stat([]) for key, _ in columns} for arm in paired}
    assert not has_pairs(nothing)
    assert draw_paired(nothing, columns, "block", "Masking strategies", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_pixel_row_is_the_same_evaluation_on_flattened_images_in_every_table() -> None:
    spec = EvalSpec(10, shots=[1], fewshot_repeats=2, linear_epochs=2, num_workers=0, features=["cls", "gap"])
    evaluator = Evaluator.build(spec, "digits", None, 16, torch.device("cpu"))
    images = torch.stack([image for image, _ in evaluator.splits.train])
    labels = torch.as_tensor([label for _, label in evaluator.splits.train])
    tests = torch.stack([image for image, _ in evaluator.splits.test])
    test_labels = torch.as_tensor([label for _, label in evaluator.splits.test])
    expected = evaluate_features(images.flatten(1), labels, tests.flatten(1), test_labels, 10, spec)
    pixels = evaluate_pixels(evaluator)
    assert pixels["metrics"] == expected and images.shape[1:] == (3, 16, 16)
    assert pixels["metrics"]["knn_top1"] > 50, "digits are separable in pixel space"

    config = ExperimentConfig(arms=["block"], seeds=[0], eval=spec, dino=TableSpec(arms=["none"], seeds=[0]))
    plan = plan_cells(config, None)
    summary = summarize(config, {"": {0: _fake(40, 41)}}, {}, plan, pixels)
    for rows in (summary["main_table"], summary["tables"]["dino"]["rows"]):
        assert list(rows)[:2] == ["pixels", "random_init"]
        assert rows["pixels"]["knn_top1"]["values"] == [expected["knn_top1"]]
        assert rows["pixels"]["gap.knn_top1"]["n"] == 0, "pixels have no GAP feature"
    line = next(line for line in main_table_markdown(summary) if line.startswith("| Raw pixels"))
    assert line.startswith(f"| Raw pixels (no network) | 1 | {expected['knn_top1']:.2f} |") and "| - | - |" in line
    assert summary["compute_seconds"] == 60 + pixels["seconds"]["evaluate"]


def test_a_failing_cell_is_reported_and_the_rest_go_on(tmp_path, capsys, monkeypatch) -> None:
    import attmask.experiments.masking as masking
    from attmask.engine.resume import TrainingError

    preset, out = _experiment_file(tmp_path), tmp_path / "out"
    arguments = ["experiment", "masking", "--preset", str(preset), "--out", str(out), "--set", "fractions=[]"]
    real = masking.pretrain_and_evaluate

    def diverging(cell, config, run_dir, evaluator):
        if cell.arm == "block":
            raise TrainingError("loss became NaN/inf before epoch 0 step 1")
        return real(cell, config, run_dir, evaluator)

    monkeypatch.setattr(masking, "pretrain_and_evaluate", diverging)
    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert "Block-wise 10-50%, seed 0, data 0.5, 2 epochs: FAILED, going on" in captured.out
    assert captured.err.strip() == (
        "attmask experiment: cell block-s0-d0.5 failed: loss became NaN/inf before epoch 0 step 1"
    )
    assert (out / "cells" / "attmask_high-s0-d0.5.json").is_file(), "the next cell ran"
    report = (out / "results.md").read_text()
    assert "**Failed in this run:** `block-s0-d0.5`: loss became NaN/inf" in report
    assert json.loads((out / "results.json").read_text())["progress"]["left"] == ["block-s0-d0.5"]

    monkeypatch.setattr(masking, "pretrain_and_evaluate", real)
    assert main(arguments) == 0, "running again retries the failed cell"
    assert (out / "cells" / "block-s0-d0.5.json").is_file()
    assert "Failed" not in (out / "results.md").read_text()


def test_cells_option_splits_an_experiment_across_folders(tmp_path, capsys) -> None:
    preset, out, other = _experiment_file(tmp_path), tmp_path / "out", tmp_path / "other"
    base = ["experiment", "masking", "--preset", str(preset), "--set", "fractions=[]"]
    assert main([*base, "--out", str(out), "--cells", "nosuch*"]) == 2
    assert "--cells 'nosuch*' matches no cell of this experiment" in capsys.readouterr().err
    assert not out.exists(), "a bad pattern fails before any work"
    assert main([*base, "--out", str(out), "--cells", "nosuch*", "--status"]) == 2
    assert "--cells 'nosuch*' matches no cell" in capsys.readouterr().err

    assert main([*base, "--out", str(out), "--cells", "block-*"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("4 cells in all (1 selected); ")
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["block-s0-d0.5.json"]
    assert "Left: `pixels`, `init-s0`, `attmask_high-s0-d0.5`." in (out / "results.md").read_text()

    # a second machine runs the rest into its own folder; the merged cells make the whole table
    assert main([*base, "--out", str(other), "--cells", "pixels", "init-*", "attmask_high-*"]) == 0
    capsys.readouterr()
    assert not (other / "cells" / "block-s0-d0.5.json").exists()
    for result in (other / "cells").iterdir():
        shutil.copy(result, out / "cells" / result.name)
    assert main([*base, "--out", str(out), "--cells", "block-*"]) == 0
    assert capsys.readouterr().out.count("already done") == 4, "selected or not, finished cells are read"
    report = (out / "results.md").read_text()
    assert "Partial results" not in report
    assert "| AttMask-High | 1 |" in report and "| Random init (no pretraining) | 1 |" in report


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.linear_epochs=-5", "eval.linear_epochs must be >= 1, got -5"),
        ("eval.temperature=0", "eval.temperature must be > 0, got 0.0"),
        ("eval.shots=[0, 5]", r"eval.shots must be counts >= 1 of images per class, e.g. \[1, 5\], got \[0, 5\]"),
        ("eval.knn_k=0", "eval.knn_k must be >= 1, got 0"),
        ("eval.train_per_class=-1", "eval.train_per_class must be >= 0 images per class"),
        ("eval.batch_size=0", "eval.batch_size must be >= 1, got 0"),
    ],
)
def test_evaluation_settings_out_of_range_fail_when_the_experiment_is_read(
    tmp_path: Path, override: str, message: str
) -> None:
    """Before: a negative linear_epochs or a zero temperature passed, and the first cell failed
    after its whole pretraining."""
    with pytest.raises(ConfigError, match=message):
        load_experiment(_experiment_file(tmp_path), [override])
