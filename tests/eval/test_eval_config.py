"""The typed evaluation config: the library's dataclasses are its defaults, YAML + ``--set`` are read
by the pretraining machinery, and every bad key or value is one line naming the key."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest

from attmask.core.typed_yaml import ConfigError
from attmask.eval.config import PROTOCOL_SECTIONS, EvalConfig, load_eval_config, save_eval_config, sections_of
from attmask.eval.davis import PropagationSettings
from attmask.eval.finetune import FinetuneConfig
from attmask.eval.linear import LinearProbeConfig
from attmask.eval.revisited_run import RevisitedSettings
from attmask.eval.session import DEFAULT_SOURCE, DataOptions, with_source
from tests.conftest import REPO_ROOT


def test_defaults_are_the_library_dataclasses() -> None:
    config = load_eval_config()
    assert config == EvalConfig()
    assert config.finetune == FinetuneConfig() and config.data == DataOptions()
    assert config.revisited == RevisitedSettings()
    probe = {f.name: getattr(config.linear, f.name) for f in fields(LinearProbeConfig)}
    assert probe == asdict(LinearProbeConfig()) and isinstance(config.linear, LinearProbeConfig)
    settings = {f.name: getattr(config.davis, f.name) for f in fields(PropagationSettings)}
    assert settings == asdict(PropagationSettings()) and isinstance(config.davis, PropagationSettings)
    assert set(PROTOCOL_SECTIONS) == {
        "knn",
        "fewshot",
        "linear",
        "finetune",
        "retrieval",
        "robustness",
        "revisited",
        "davis",
    }


def test_yaml_then_overrides_with_coercion(tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text("knn: {ks: [5], temperature: 0.1}\nfinetune: {epochs: 7, clip_grad: 3}\n")
    config = load_eval_config(
        path,
        [
            "knn.ks=[1, 2]",
            "data.per_class=10",
            "linear.crop_scale=[0.5, 1]",
            "davis.sequences=[bike-packing]",
            "session.device=cuda:1",
        ],
    )
    assert config.knn.ks == [1, 2] and config.knn.temperature == 0.1  # --set wins over the file
    assert config.finetune.epochs == 7 and config.finetune.clip_grad == 3.0
    assert config.data.per_class == 10 and config.data.train_subset == 10
    assert config.linear.crop_scale == (0.5, 1.0) and config.davis.sequences == ["bike-packing"]
    assert config.session.device == "cuda:1" and config.finetune.layer_decay == 0.75  # others keep defaults


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["knn.kz=1"], "unknown config key knn.kz (did you mean knn.ks?); valid keys under knn: ks, temperature"),
        (["knn.tau=1"], "unknown config key knn.tau; valid keys under knn: ks, temperature, features"),
        (["ks=[20]"], "unknown config key ks (did you mean knn.ks?); keys are section.key with the sections data"),
        (["knn.ks=x"], "config key knn.ks expects int, got 'x'"),
        (["knn.features=pixels"], "config key knn.features must be one of cls, gap"),
        (["data.subset=10"], "config key data.subset must be a fraction in (0, 1]"),
        (["data.subset=0.5", "data.per_class=3"], "set one of them"),
        (["robustness.ratios=[1.5]"], "config key robustness.ratios must be one or more fractions in [0, 1]"),
        (["finetune.epochs=0"], "config section finetune: need epochs >= 1"),
        (["linear.feature_kind=pixels"], "config section linear: unknown feature_kind 'pixels'"),
        (["davis.radius=-1"], "config key davis.radius must be >= 0"),
        (["knn=3"], "config section knn must be a mapping"),
        (["knn.ks"], "must look like section.key=value"),
    ],
)
def test_bad_keys_and_values_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_eval_config(None, overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_names_the_presets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval config file not found: .*configs/eval/"):
        load_eval_config(tmp_path / "nope.yaml")


def test_saved_sections_read_back(tmp_path: Path) -> None:
    config = load_eval_config(
        None, ["linear.mode=full", "linear.epochs=3", "robustness.classifier=linear", "data.subset=0.5", "knn.ks=[7]"]
    )
    path = tmp_path / "robustness.config.yaml"
    save_eval_config(config, path, sections_of("robustness"))
    text = path.read_text()
    assert text.splitlines()[0] == "data:" and "knn:" not in text and "ratios: [0.0, 0.1" in text
    again = load_eval_config(path)
    assert again.linear == config.linear and again.robustness == config.robustness and again.data == config.data
    assert again.knn == EvalConfig().knn  # not saved: the default


def test_the_presets_load() -> None:
    presets = sorted((REPO_ROOT / "configs" / "eval").glob("*.yaml"))
    assert presets
    for path in presets:
        load_eval_config(path)


def test_a_null_source_is_the_pretraining_data_else_the_default() -> None:
    pretrained = {"data": {"source": "/images/train", "data_dir": "/cache"}}
    unset = DataOptions(batch_size=8)
    inherited = with_source(unset, pretrained)
    assert (inherited.source, inherited.data_dir, inherited.batch_size) == ("/images/train", "/cache", 8)
    assert unset.source is None  # a new object
    assert with_source(DataOptions(data_dir="/mine"), pretrained).data_dir == "/mine"  # set: kept
    assert with_source(DataOptions(source="digits"), pretrained) == DataOptions(source="digits")  # set: as is
    for pretraining in (None, {}, {"data": {}}, {"data": {"source": None}}):  # converted, timm, safetensors
        assert with_source(unset, pretraining).source == DEFAULT_SOURCE == "fashion-mnist"
