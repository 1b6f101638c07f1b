"""DAVIS 2017 J and F: the official davis2017-evaluation's values (davis_jf.npz), case by case."""

from __future__ import annotations

import numpy as np
import pytest

from attmask.eval.davis_metrics import (
    aggregate,
    boundary_f,
    boundary_map,
    region_similarity,
    score_sequence,
    statistics,
)
from tests.conftest import load_reference


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference("davis_jf.npz")


def test_edge_cases_j_f_and_boundary_maps(ref) -> None:
    for index, name in enumerate(ref["edge_names"]):
        gt, pred = ref["edge_gt"][index], ref["edge_pred"][index]
        np.testing.assert_array_equal(boundary_map(gt), ref["edge_gt_bmap"][index], err_msg=str(name))
        np.testing.assert_array_equal(boundary_map(pred), ref["edge_pred_bmap"][index], err_msg=str(name))
        assert region_similarity(pred, gt) == pytest.approx(ref["edge_J"][index], abs=1e-12), name
        assert boundary_f(pred, gt) == pytest.approx(ref["edge_F"][index], abs=1e-12), name
        void = ref["edge_void"]
        assert region_similarity(pred, gt, void) == pytest.approx(ref["edge_J_void"][index], abs=1e-12), name
        assert boundary_f(pred, gt, void) == pytest.approx(ref["edge_F_void"][index], abs=1e-12), name


def test_statistics_mean_recall_decay(ref) -> None:
    flat, offsets = ref["stats_values_flat"], ref["stats_offsets"]
    for n in range(len(offsets) - 1):
        np.testing.assert_allclose(statistics(flat[offsets[n] : offsets[n + 1]]), ref["stats_out"][n], atol=1e-12)
    np.testing.assert_allclose(statistics(ref["stats_nan_values"]), ref["stats_nan_out"], atol=1e-12)


def test_sequences_objects_and_global_numbers(ref) -> None:
    sequences = [score_sequence(ref[f"{s}_gt_labels"], ref[f"{s}_pred_labels"], s) for s in ("seqa", "seqb")]
    for name, scores in zip(("seqa", "seqb"), sequences):
        np.testing.assert_allclose(scores.j, ref[f"{name}_J"], atol=1e-12)
        np.testing.assert_allclose(scores.f, ref[f"{name}_F"], atol=1e-12)
    rows = [statistics(row) for s in sequences for row in s.j]
    np.testing.assert_allclose([r[0] for r in rows], ref["J_M"], atol=1e-12)
    np.testing.assert_allclose([r[2] for r in rows], ref["J_D"], atol=1e-12)
    numbers = aggregate(sequences)
    for name, value in zip(ref["global_names"], ref["global_values"]):
        assert numbers[str(name)] == pytest.approx(value, abs=1e-12), name


def test_a_predicted_object_above_the_first_frames_is_one_line() -> None:
    gt = np.zeros((4, 8, 8), np.uint8)
    gt[:, 2:4, 2:4] = 1
    pred = gt.copy()
    pred[1, 5:7, 5:7] = 2
    with pytest.raises(ValueError, match="predictions hold object 2, but the first frame has only 1"):
        score_sequence(gt, pred, "toy")


def _moving_square_video(root, frames: int = 8, size: int = 64) -> None:
    """A red square moving 3 px a frame over grey noise, with its annotation (label 1), DAVIS layout."""
    rng = np.random.default_rng(0)
    images, notes = root / "JPEGImages" / "480p" / "toy", root / "Annotations" / "480p" / "toy"
    images.mkdir(parents=True)
    notes.mkdir(parents=True)
    from PIL import Image

    for t in range(frames):
        pixels = rng.integers(90, 130, (size, size, 3), dtype=np.uint8)
        labels = np.zeros((size, size), np.uint8)
        top, left = 16 + t, 8 + 3 * t
        pixels[top : top + 20, left : left + 20] = (220, 30, 30)
        labels[top : top + 20, left : left + 20] = 1
        Image.fromarray(pixels).save(images / f"{t:05d}.jpg", quality=95)
        annotation = Image.fromarray(labels, mode="L").convert("P")
        annotation.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
        annotation.save(notes / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("toy\n")


def test_eval_davis_follows_a_moving_object_end_to_end(tmp_path, capsys) -> None:
    import json

    from attmask.cli.main import main
    from tests.engine.tiny import TINY

    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *[a for s in (*TINY, "optim.epochs=1") for a in ("--set", s)]]) == 0
    _moving_square_video(tmp_path / "davis")
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "davis",
                "--checkpoint",
                str(run),
                "--data",
                str(tmp_path / "davis"),
                "--scale",
                "64",
                "--radius",
                "4",
                "--save-masks",
                str(tmp_path / "masks"),
            ]
        )
        == 0
    )
    assert "DAVIS J&F-Mean" in capsys.readouterr().out
    result = json.loads((run / "eval" / "davis.json").read_text())
    assert result["J-Mean"] > 50, result  # the propagated mask follows the square
    assert len(list((tmp_path / "masks" / "toy").glob("*.png"))) == 8
