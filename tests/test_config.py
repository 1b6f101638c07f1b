"""Typed config: YAML + overrides, unknown keys and bad values are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from attmask.config import Config, ConfigError, load_config, save_config, to_dict
from attmask.core.typed_yaml import dotted_keys
from attmask.engine.data import crop_config
from attmask.methods import METHODS, build_method

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Presets kept for benchmarks (e.g. bench_tta's demo_v1), checked like the shipped ones.
BENCHMARK_PRESETS = Path(__file__).resolve().parents[1] / "benchmarks" / "presets"


def test_defaults_and_overrides() -> None:
    config = load_config(
        None,
        [
            "optim.lr=1e-3",
            "masking.ratio=[0.2, 0.4]",
            "model.depth=4",
            "train.progress=false",
            "data.subset=0.2",
            "masking.ratio=0.3",
        ],
    )
    assert config.optim.lr == 1e-3 and config.model.depth == 4
    assert config.masking.ratio == (0.3, 0.3), "later overrides win; a scalar means a fixed ratio"
    assert config.train.progress is False and config.data.subset == 0.2
    assert config.optim.epochs == Config().optim.epochs


@pytest.mark.parametrize(
    "path", sorted([*CONFIGS.glob("*.yaml"), *BENCHMARK_PRESETS.glob("*.yaml")]), ids=lambda p: p.name
)
def test_every_preset_loads(path: Path) -> None:
    config = load_config(path)
    assert config.train.method in METHODS
    small = load_config(path, ["model.depth=1", "recon.decoder_depth=1"])  # settings fit the method
    method = build_method(small, crop_config(small.data).global_size, crop_config(small.data).num_local)
    assert method.eval_backbone.depth == 1


def test_round_trip_through_yaml(tmp_path) -> None:
    config = load_config(None, ["masking.strategy=attmask_hint", "data.global_scale=[0.3, 1.0]"])
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(config)
    assert again.data.global_scale == (0.3, 1.0)


@pytest.mark.parametrize(
    ("override", "meant"),
    [
        ("train.epochs=3", "optim.epochs"),  # the same name in another section
        ("train.batch_size=8", "data.batch_size"),
        ("train.seeed=1", "train.seed"),  # a typo in its own section
        ("data.img_size=32", "data.global_size"),
        ("lr=0.1", "optim.lr"),  # no section
        ("batch_size_per_gpu=64", "data.batch_size"),  # the original DINO / iBOT names
        ("masking.pred_ratio=0.3", "masking.ratio"),
        ("momentum_teacher=0.99", "optim.teacher_momentum"),
    ],
)
def test_an_unknown_key_names_the_key_it_likely_meant(override: str, meant: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"^unknown config key {key} \(did you mean {meant}\?\); valid keys"):
        load_config(overrides=[override])


def test_no_guess_for_a_key_like_none_and_every_alias_is_a_key() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["model.unknwn=1"])
    assert "did you mean" not in str(error.value)
    keys = set(dotted_keys(Config))
    assert set(Config.KEY_ALIASES.values()) <= keys and not set(Config.KEY_ALIASES) & keys


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optim.lrr=1"],
            r"unknown config key optim.lrr \(did you mean optim.lr\?\); valid keys under optim: epochs, ",
        ),
        (["optim.lr=fast"], "config key optim.lr expects float, got 'fast'"),
        (["model.depth=deep"], "config key model.depth expects int"),
        (["masking.ratio=1.5"], r"masking.ratio must satisfy 0 <= low <= high <= 1"),
        (["masking.strategy=attmask_top"], "unknown masking strategy"),
        (["bogus.key=1"], "unknown config key bogus; valid keys: model, head"),
        (["optim"], "must look like section.key=value"),
        (["train.progress=maybe"], "expects bool"),
    ],
)
def test_bad_overrides(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"optim": {"lr": 1e-3, "beta": [0.9, 0.95]}}))
    with pytest.raises(ConfigError, match="unknown config key optim.beta"):
        load_config(wrong)


def test_a_removed_key_is_dropped_when_false_and_one_error_when_set(tmp_path) -> None:
    """``train.reference_design`` (removed: its replica lives in benchmarks/) in configs written before."""
    old = tmp_path / "old.yaml"
    values = {"optim": {"lr": 1e-3}, "train": {"reference_design": False, "seed": 3}}
    old.write_text(yaml.safe_dump(values))
    config = load_config(old)
    assert config.train.seed == 3 and "reference_design" not in to_dict(config)["train"]
    assert values["train"]["reference_design"] is False, "the caller's mapping is left intact"
    assert load_config(None, ["train.reference_design=false"]).train.seed == 0
    message = r"config key train.reference_design was removed: .* benchmarks/reference_design.py"
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["train.reference_design=true"])
    old.write_text(yaml.safe_dump({"train": {"reference_design": True}}))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(old)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.parallel=zero3"], "config key train.parallel must be ddp or fsdp, got 'zero3'"),
        (
            ["train.parallel=fsdp", "train.figures_every_epochs=1"],
            "train.figures_every_epochs needs train.parallel=ddp",
        ),
        (["train.parallel=fsdp", "train.compile=true"], "train.compile is not supported with train.parallel=fsdp"),
        (["train.parallel=fsdp", "train.fidelity=original"], "train.fidelity=original .* not supported with"),
    ],
)
def test_fsdp_refuses_what_it_does_not_support_in_one_line(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_fsdp_refuses_fp16() -> None:
    from attmask.core.distributed import DistributedContext
    from attmask.engine.parallel import parallelize

    with pytest.raises(ValueError, match="train.parallel=fsdp trains in fp32 or bf16, not fp16"):
        parallelize(None, DistributedContext(world_size=2), "fsdp", "fp16")  # type: ignore[arg-type]
