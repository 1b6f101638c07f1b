"""``attmask eval`` and ``attmask export`` end to end on a tiny pretraining run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attmask.cli.main import main
from attmask.data.augment import eval_transform
from attmask.data.datasets import build_dataset
from attmask.eval.features import extract_features
from attmask.eval.knn import weighted_knn
from attmask.models.checkpoints import load_backbone
from tests.engine.tiny import TINY

COMMON = ["--data", "digits", "--num-workers", "0", "--no-progress", "--batch-size", "128"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    sets = [a for o in (*TINY, "optim.epochs=1", "train.knn_every_epochs=0") for a in ("--set", o)]
    assert main(["pretrain", "--out", str(out), *sets]) == 0
    return out


def _eval(protocol: str, *arguments: str, capsys) -> tuple[int, str, str]:
    code = main(["eval", protocol, *arguments])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err.strip()


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _direct_knn(checkpoint: Path, which: str = "teacher") -> float:
    model = load_backbone(checkpoint, which).model
    transform = eval_transform(16)
    loaders = [
        torch.utils.data.DataLoader(build_dataset("digits", split, transform), batch_size=128)
        for split in ("train", "test")
    ]
    (bank, bank_labels), (queries, labels) = (extract_features(model, loader) for loader in loaders)
    return weighted_knn(bank, bank_labels, queries, labels, 10, k=20).top1


def test_knn_matches_the_library_and_uses_the_cache(run_dir: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    code, out, err = _eval(
        "knn",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--cache-dir",
        str(cache),
        "--set",
        "knn.ks=[20, 200]",
        capsys=capsys,
    )
    assert code == 0, err
    result = _json(run_dir / "eval" / "knn.json")
    assert result["results"]["20"]["top1"] == pytest.approx(_direct_knn(run_dir))
    assert result["session"]["which"] == "teacher" and result["session"]["data"] == "digits"
    assert list(result["results"]) == ["20", "200"]
    assert set(result["versions"]) == {"attmask", "torch", "timm", "python"} and result["commit"] and result["date"]
    assert result["device"].startswith("cpu (") and result["world_size"] == 1  # the processor, not just "cpu"
    assert out.startswith("weighted 20-NN top-1") and len(out.splitlines()) == 1
    cached = sorted(cache.iterdir())
    assert len(cached) == 2  # train and test features
    mtimes = [p.stat().st_mtime_ns for p in cached]
    out_file = tmp_path / "again.json"
    assert (
        _eval(
            "knn",
            "--checkpoint",
            str(run_dir),
            *COMMON,
            "--cache-dir",
            str(cache),
            "--k",
            "20",
            "--out",
            str(out_file),
            capsys=capsys,
        )[0]
        == 0
    )
    assert [p.stat().st_mtime_ns for p in sorted(cache.iterdir())] == mtimes  # read, not rewritten
    assert _json(out_file)["results"]["20"] == result["results"]["20"]


def test_student_export_and_reload(run_dir: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "student.safetensors"
    code, out, err = (
        main(["export", "--checkpoint", str(run_dir), "--student", "--out", str(target)]),
        *(lambda c: (c.out, c.err))(capsys.readouterr()),
    )
    assert code == 0, err
    assert "exported student" in out and target.is_file() and target.with_suffix(".json").is_file()
    code, _, err = _eval(
        "knn", "--checkpoint", str(target), *COMMON, "--k", "20", "--out", str(tmp_path / "k.json"), capsys=capsys
    )
    assert code == 0, err
    assert _json(tmp_path / "k.json")["results"]["20"]["top1"] == pytest.approx(_direct_knn(run_dir, "student"))


def test_fewshot_retrieval_robustness(run_dir: Path, tmp_path: Path, capsys) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    code, out, err = _eval(
        "fewshot", "--checkpoint", str(run_dir), *COMMON, *cache, "--shots", "1", "5", "--repeats", "3", capsys=capsys
    )
    assert code == 0, err
    fewshot = _json(run_dir / "eval" / "fewshot.json")["results"]
    assert fewshot["1"]["k"] == 1 and len(fewshot["5"]["top1"]) == 3 and "nu=5" in out
    code, out, err = _eval("retrieval", "--checkpoint", str(run_dir), *COMMON, *cache, capsys=capsys)
    assert code == 0, err
    recall = _json(run_dir / "eval" / "retrieval.json")["recall"]
    assert list(recall) == ["1", "2", "4", "8"] and recall["1"] <= recall["8"]
    code, out, err = _eval(
        "robustness",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        *cache,
        "--ratios",
        "0",
        "0.5",
        "--attention-checkpoint",
        str(run_dir),
        capsys=capsys,
    )
    assert code == 0, err
    occlusion = _json(run_dir / "eval" / "robustness.json")["occlusion"]
    assert occlusion["0.0"] == pytest.approx(_direct_knn(run_dir))  # ratio 0 = plain 20-NN


def test_robustness_with_variants_names_the_classifier(run_dir: Path, tmp_path: Path, capsys) -> None:
    digits = _folder(tmp_path / "digits_like", tuple(str(label) for label in range(10)))
    code, out, err = _eval(
        "robustness",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--set",
        "robustness.ratios=[0]",
        "--variant",
        f"noise={digits}",
        "--out",
        str(tmp_path / "r.json"),
        capsys=capsys,
    )
    assert code == 0, err
    result = _json(tmp_path / "r.json")
    assert result["classifier"] == "20-NN" and list(result["variants"]) == ["noise"]  # not the variant's name
    assert out.startswith("20-NN top-1 with the most attended patches blacked out") and ", noise: " in out


def test_config_file_set_and_the_written_config(run_dir: Path, tmp_path: Path, capsys) -> None:
    preset = tmp_path / "eval.yaml"
    preset.write_text("knn: {ks: [5, 10], temperature: 0.1}\ndata: {per_class: 20}\n")
    out_file = tmp_path / "k.json"
    code, out, err = _eval(
        "knn",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--config",
        str(preset),
        "--set",
        "knn.ks=[10]",
        "--out",
        str(out_file),
        capsys=capsys,
    )
    assert code == 0, err
    result = _json(out_file)
    assert list(result["results"]) == ["10"] and result["temperature"] == 0.1  # --set over the file
    assert result["session"]["subset"] == 20
    written = tmp_path / "k.config.yaml"
    text = written.read_text()
    assert "knn:\n  ks: [10]\n  temperature: 0.1" in text and "batch_size: 128" in text and "finetune" not in text
    again = tmp_path / "again.json"
    code, _, err = _eval(
        "knn", "--checkpoint", str(run_dir), "--config", str(written), "--out", str(again), capsys=capsys
    )
    assert code == 0, err
    assert _json(again)["results"] == result["results"]  # the written config reproduces the run


def test_without_data_the_checkpoint_pretraining_data_is_evaluated(run_dir: Path, tmp_path: Path, capsys) -> None:
    """The run was pretrained on digits: no --data evaluates digits (not the fashion-mnist default),
    says so, and writes the resolved source into the config file."""
    out_file = tmp_path / "k.json"
    arguments = ["--checkpoint", str(run_dir), "--num-workers", "0", "--no-progress", "--k", "20"]
    code, _, err = _eval("knn", *arguments, "--out", str(out_file), capsys=capsys)
    assert code == 0, err
    assert err == "evaluating on digits (the checkpoint's pretraining data); --data chooses other images"
    result = _json(out_file)
    assert result["session"]["data"] == "digits"
    assert result["results"]["20"]["top1"] == pytest.approx(_direct_knn(run_dir))
    assert "source: digits" in (tmp_path / "k.config.yaml").read_text()
    code, _, err = _eval("knn", *arguments, "--data", "digits", "--out", str(out_file), capsys=capsys)
    assert code == 0 and err == ""  # chosen: nothing to say


def test_help_lists_the_keys_and_the_shorthands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "finetune", "--help"])
    text = capsys.readouterr().out
    assert "finetune.layer_decay" in text and "default: 0.75" in text and "data.batch_size" in text
    assert "knn.temperature" not in text and "--layer-decay = finetune.layer_decay" in text
    assert "one of cls, gap" in text  # finetune.pool's choices


def _folder(root: Path, classes: tuple[str, ...]) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{index}.png")
    return root


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--checkpoint", "/nonexistent.pth"], "checkpoint not found: /nonexistent.pth"),
        (["--subset", "abc"], None),  # argparse's own usage error
        (["--data", "UNLABELLED"], "has no class labels"),
        (["--variant", "odd=OTHER"], "variant 'odd'"),
        (["--batch-size", "0"], "config key data.batch_size must be >= 1, got 0"),
        (
            ["--set", "knn.kz=3"],
            "unknown config key knn.kz (did you mean knn.ks?); valid keys under knn: ks, temperature",
        ),
        (["--set", "knn.ks=[0]"], "config key knn.ks must be one or more counts >= 1"),
        (["--config", "/nonexistent.yaml"], "eval config file not found: /nonexistent.yaml"),
    ],
)
def test_bad_input_is_one_line(
    run_dir: Path, tmp_path: Path, capsys, arguments: list[str], message: str | None
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(flat / "x.png")
    other = _folder(tmp_path / "other", ("cat", "dog"))
    arguments = [a.replace("UNLABELLED", str(flat)).replace("OTHER", str(other)) for a in arguments]
    base = ["--checkpoint", str(run_dir), *COMMON, "--out", str(tmp_path / "r.json")]
    protocol = "robustness" if "--variant" in arguments else "knn"
    if message is None:
        with pytest.raises(SystemExit):
            main(["eval", protocol, *base, *arguments])
        assert "--subset takes a fraction or a count" in capsys.readouterr().err
        return
    code, _, err = _eval(protocol, *base, *arguments, capsys=capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_linear_fast_matches_the_library_full_and_finetune_run(run_dir: Path, tmp_path: Path, capsys) -> None:
    from attmask.eval.linear import LinearProbeConfig, linear_probe_on_features

    code, out, err = _eval(
        "linear",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--epochs",
        "5",
        "--lr",
        "2",
        "--out",
        str(tmp_path / "lin.json"),
        capsys=capsys,
    )
    assert code == 0, err
    result = _json(tmp_path / "lin.json")
    model = load_backbone(run_dir).model
    loaders = [
        torch.utils.data.DataLoader(build_dataset("digits", split, eval_transform(16)), batch_size=128)
        for split in ("train", "test")
    ]
    (train, train_labels), (test, test_labels) = (extract_features(model, loader) for loader in loaders)
    expected = linear_probe_on_features(
        train, train_labels, test, test_labels, 10, LinearProbeConfig(epochs=5, base_lr=2.0)
    )
    assert result["kind"] == "cls" and result["top1"] == pytest.approx(expected.top1)
    assert len(result["train_loss"]) == 5 and out.startswith("linear probe (fast, cls features, 5 epochs)")
    code, out, err = _eval(
        "linear",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--epochs",
        "1",
        "--mode",
        "full",
        "--out",
        str(tmp_path / "full.json"),
        capsys=capsys,
    )
    assert code == 0 and _json(tmp_path / "full.json")["mode"] == "full", err
    code, out, err = _eval(
        "finetune",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--train-batch-size",
        "64",
        "--out",
        str(tmp_path / "ft.json"),
        capsys=capsys,
    )
    assert code == 0, err
    finetuned = _json(tmp_path / "ft.json")
    assert 0 <= finetuned["top1"] <= 100 and finetuned["config"]["layer_decay"] == 0.75
    code, out, err = _eval(
        "robustness",
        "--checkpoint",
        str(run_dir),
        *COMMON,
        "--classifier",
        "linear",
        "--epochs",
        "5",
        "--lr",
        "2",
        "--ratios",
        "0",
        "--out",
        str(tmp_path / "rob.json"),
        capsys=capsys,
    )
    assert code == 0, err
    assert _json(tmp_path / "rob.json")["occlusion"]["0.0"] == pytest.approx(expected.top1)


@pytest.mark.parametrize(
    ("protocol", "root"), [("davis", "the DAVIS 2017 root (JPEGImages/480p"), ("revisited", "gnd_<dataset>.pkl")]
)
def test_benchmark_protocols_have_no_default_data(run_dir: Path, capsys, protocol: str, root: str) -> None:
    code, _, err = _eval(protocol, "--checkpoint", str(run_dir), "--no-progress", capsys=capsys)
    assert code == 2 and err.startswith(f"attmask eval: error: eval {protocol} needs --data: ") and root in err


@pytest.mark.parametrize(
    ("pretraining", "why"),
    [
        ({"data": {"source": "digits"}}, "the checkpoint's pretraining data"),
        ({"model": {}}, "the default; the checkpoint does not say"),  # a config without data
        (None, "the default; the checkpoint does not say"),  # timm, safetensors, converted
    ],
)
def test_the_data_note_says_where_the_data_came_from(pretraining, why) -> None:
    from types import SimpleNamespace

    from attmask.cli.evaluate import data_note

    session = SimpleNamespace(loaded=SimpleNamespace(config=pretraining), data=SimpleNamespace(source="fashion-mnist"))
    assert data_note(session) == f"evaluating on fashion-mnist ({why}); --data chooses other images"
