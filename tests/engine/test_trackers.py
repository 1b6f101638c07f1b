"""train.loggers: Weights & Biases (offline) and MLflow (local file store) receive exactly log.jsonl's
scalars at the same steps; an unknown or missing tracker is one line."""

from __future__ import annotations

import pytest

from attmask.cli.main import main
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from tests.engine.tiny import TINY, monitored_trainer, tiny_config


def _expected(run) -> dict[tuple[str, int], float]:
    """``(key, step) -> value`` of every numeric scalar of log.jsonl rows that have a step."""
    points = {}
    for row in read_log(run):
        if "step" not in row:
            continue
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                points[(key, int(row["step"]))] = float(value)
    return points


def test_mlflow_file_store_holds_the_log(tmp_path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow")  # the trackers extra
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    monitored_trainer(
        tiny_config(
            "train.loggers=[jsonl, mlflow]",
            "train.knn_every_epochs=1",
            "train.knn_train_samples=100",
            "train.knn_test_samples=50",
        ),
        run,
    ).fit()
    client = mlflow.tracking.MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("attmask").experiment_id])
    assert found.info.run_name == "run" and found.data.params["optim.lr"] == "0.0005"
    expected = _expected(run)
    logged = {
        (key, point.step): point.value
        for key in {k for k, _ in expected}
        for point in client.get_metric_history(found.info.run_id, key)
    }
    assert logged == pytest.approx(expected)
    assert ("knn_top1", 4) in logged and ("loss", 1) in logged


def test_wandb_offline_receives_the_log(tmp_path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sent: dict[tuple[str, int], float] = {}
    original = wandb.sdk.wandb_run.Run.log

    def spy(self, data, step=None, **kwargs):
        sent.update({(key, step): value for key, value in data.items()})
        return original(self, data, step=step, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", spy)
    run = tmp_path / "run"
    Trainer(tiny_config("train.loggers=[jsonl, wandb]"), run).fit()
    assert sent == pytest.approx(_expected(run))
    assert list((run / "wandb").glob("offline-run-*"))  # wandb wrote its offline run beside the log


def test_unknown_or_missing_tracker_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    sets = [a for s in (*TINY, "optim.epochs=1", "train.loggers=[jsonl, comet]") for a in ("--set", s)]
    assert main(["pretrain", "--out", str(tmp_path / "run"), *sets]) == 2
    assert "unknown train.loggers entry 'comet'" in capsys.readouterr().err
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    sets = [a for s in (*TINY, "optim.epochs=1", "train.loggers=[jsonl, wandb]") for a in ("--set", s)]
    assert main(["pretrain", "--out", str(tmp_path / "run2"), *sets]) == 2
    assert "names wandb, which is not installed: pip install wandb" in capsys.readouterr().err


def test_a_tracker_that_cannot_start_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    """No W&B login (what wandb.init raises without an API key) or a tracking URI MLflow cannot use:
    one line naming the ways out, not the tracker's traceback."""
    wandb = pytest.importorskip("wandb")
    pytest.importorskip("mlflow")

    def no_login(*args, **kwargs):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.\nmore detail")

    monkeypatch.setattr(wandb, "init", no_login)
    sets = [a for s in (*TINY, "optim.epochs=1", "train.loggers=[jsonl, wandb]") for a in ("--set", s)]
    assert main(["pretrain", "--out", str(tmp_path / "run"), *sets]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "more detail" not in err
    assert (
        "wandb could not start a run (No API key configured. Use `wandb login` to log in.); "
        "log in (wandb login, or WANDB_API_KEY), run offline with WANDB_MODE=offline" in err
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    sets = [a for s in (*TINY, "optim.epochs=1", "train.loggers=[jsonl, mlflow]") for a in ("--set", s)]
    assert main(["pretrain", "--out", str(tmp_path / "run2"), *sets]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "mlflow could not start a run in bogus://nowhere (" in err
    assert "fix MLFLOW_TRACKING_URI" in err
