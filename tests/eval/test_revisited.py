"""Revisited Oxford / Paris: the official compute_map's values (revisited_map.npz), the untrusted
ground truth, and ``attmask eval revisited`` end to end on a synthetic folder."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from attmask.cli.main import main
from attmask.eval.revisited import compute_map, load_ground_truth, protocol_sets
from tests.conftest import load_reference
from tests.engine.tiny import TINY


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference("revisited_map.npz")


def _ground_truth(ref) -> list[dict]:
    def sets(name: str) -> list[np.ndarray]:
        flat, offsets = ref[f"{name}_flat"], ref[f"{name}_offsets"]
        return [flat[offsets[q] : offsets[q + 1]] for q in range(len(offsets) - 1)]

    return [{"easy": e, "hard": h, "junk": j} for e, h, j in zip(sets("easy"), sets("hard"), sets("junk"))]


@pytest.mark.parametrize("protocol", ["E", "M", "H"])
@pytest.mark.parametrize("truncated", [False, True])
def test_compute_map_matches_the_official_code(ref, protocol, truncated) -> None:
    ok, junk = protocol_sets(_ground_truth(ref), protocol)
    for q, (positives, ignored) in enumerate(zip(ok, junk)):
        assert set(positives) == set(np.flatnonzero(ref[f"ok_{protocol}"][q]))
        assert set(ignored) == set(np.flatnonzero(ref[f"junkset_{protocol}"][q]))
    prefix = "trunc_" if truncated else ""
    ranks = ref["ranks"][: int(ref["trunc_k"])] if truncated else ref["ranks"]
    result = compute_map(ranks, ok, junk, list(ref["ks"]))
    np.testing.assert_allclose(result.map, ref[f"{prefix}map_{protocol}"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.aps, ref[f"{prefix}aps_{protocol}"], rtol=0, atol=1e-12)  # NaN where NaN
    np.testing.assert_allclose(result.prs, ref[f"{prefix}prs_{protocol}"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.mpr, ref[f"{prefix}mpr_{protocol}"], rtol=0, atol=1e-12)


def test_where_the_official_code_crashes_we_score_zero_or_nan() -> None:
    ranks = np.arange(5)[:, None]  # one query, top 5 of a larger database
    missed = compute_map(ranks, [np.array([7, 8])], [np.array([], dtype=np.int64)])
    assert missed.aps[0] == 0 and missed.prs[0].tolist() == [0, 0, 0] and missed.map == 0
    empty = compute_map(ranks, [np.array([], dtype=np.int64)], [np.array([], dtype=np.int64)])
    assert np.isnan(empty.map) and np.isnan(empty.mpr).all()


def test_ground_truth_with_a_class_reference_is_refused(tmp_path) -> None:
    (tmp_path / "gnd_evil.pkl").write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [os.getcwd]}))
    with pytest.raises(ValueError, match=r"refers to posix.getcwd, which is not loaded"):
        load_ground_truth(tmp_path / "gnd_evil.pkl")
    (tmp_path / "gnd_cut.pkl").write_bytes(pickle.dumps({"imlist": [1] * 50})[:20])
    with pytest.raises(ValueError, match="not a readable ground-truth pickle"):
        load_ground_truth(tmp_path / "gnd_cut.pkl")


def _synthetic_landmarks(root) -> None:
    """3 'landmarks' (random textures), each photographed twice in the database; one query per landmark
    is a copy of one of its photos (box = the whole image): ideal features rank both photos first."""
    rng = np.random.default_rng(0)
    (root / "jpg").mkdir(parents=True)
    textures = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    names = []
    for index, texture in enumerate(textures):
        for copy in range(2):
            name = f"db_{index}_{copy}"
            Image.fromarray(texture).save(root / "jpg" / f"{name}.jpg", quality=95)
            names.append(name)
        Image.fromarray(texture).save(root / "jpg" / f"q_{index}.jpg", quality=95)
    gnd = [{"bbx": [0, 0, 56, 40], "easy": [2 * i], "hard": [2 * i + 1], "junk": []} for i in range(3)]
    (root / "gnd_toy.pkl").write_bytes(
        pickle.dumps({"imlist": names, "qimlist": [f"q_{i}" for i in range(3)], "gnd": gnd})
    )


def test_eval_revisited_end_to_end(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *[a for s in (*TINY, "optim.epochs=1") for a in ("--set", s)]]) == 0
    _synthetic_landmarks(tmp_path / "toy")
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "revisited",
                "--checkpoint",
                str(run),
                "--data",
                str(tmp_path / "toy"),
                "--set",
                "revisited.max_side=32",
            ]
        )
        == 0
    )
    assert "toy: mAP E / M / H" in capsys.readouterr().out
    result = json.loads((run / "eval" / "revisited.json").read_text())
    assert result["num_queries"] == 3 and result["num_database"] == 6 and result["max_side"] == 32
    assert "max_side: 32" in (run / "eval" / "revisited.config.yaml").read_text()
    assert result["map_E"] == pytest.approx(100.0)  # each query is a copy of its easy positive
    assert 0 <= result["map_H"] <= 100 and len(result["mpr_M"]) == 3
