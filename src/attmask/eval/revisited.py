"""Revisited Oxford / Paris image retrieval (Radenovic et al., CVPR 2018): mAP and mP@k under the
Easy, Medium and Hard protocols, computed as the official ``revisitop`` ``compute_map`` does, and
the ground truth read without unpickling code.

Metric semantics (pinned by ``ibot``-independent golden values, ``revisited_map.npz``):

* junk images are removed from the ranking: a positive's position drops by the junk ranked above it;
* AP is the trapezoidal rule over the retrieved positives, ``AP = (1/n_ok) sum_j (p0_j + p1_j) / 2``
  with ``p0_j = j / r_j`` (1 at ``r_j = 0``) and ``p1_j = (j + 1) / (r_j + 1)``, ``r_j`` the junk-free
  0-based rank of the j-th retrieved positive; positives never retrieved stay in ``n_ok``;
* ``P@k = #{positives at rank <= k_q} / k_q`` with ``k_q = min(k, rank of the last retrieved positive)``;
* a query without positives has AP = P@k = NaN and is left out of the means.

Where the official code crashes we choose: a query whose positives are all missing from a
(truncated) ranking gets AP = 0 and P@k = 0 (it raises ``ValueError``); if no query has positives
the means are NaN (it raises ``ZeroDivisionError``).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROTOCOLS = ("E", "M", "H")


@dataclass
class RevisitedResult:
    """One protocol's scores (fractions in [0, 1], as ``compute_map`` returns them).

    Attributes:
        map: mean AP over queries with positives (NaN when none has).
        aps: ``(Q,)`` AP per query, NaN without positives.
        mpr: ``(len(ks),)`` mean P@k over queries with positives.
        prs: ``(Q, len(ks))`` P@k per query, NaN rows without positives.
    """

    map: float
    aps: np.ndarray
    mpr: np.ndarray
    prs: np.ndarray


def _junk_free_positions(ranking: np.ndarray, ok: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """0-based positions of the retrieved positives in ``ranking`` once junk images are removed."""
    positive = np.flatnonzero(np.isin(ranking, ok))
    junk_positions = np.flatnonzero(np.isin(ranking, junk))
    return positive - np.searchsorted(junk_positions, positive)  # junk ranked above each positive


def average_precision(positions: np.ndarray, num_ok: int) -> float:
    """Trapezoidal AP of positives at junk-free 0-based ``positions`` (sorted) out of ``num_ok``."""
    if num_ok == 0:
        return float("nan")
    j = np.arange(len(positions), dtype=np.float64)
    r = positions.astype(np.float64)
    p0 = np.where(r == 0, 1.0, j / np.where(r == 0, 1.0, r))
    p1 = (j + 1) / (r + 1)
    return float(np.sum((p0 + p1) / 2) / num_ok)


def precision_at(positions: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """``P@k`` for each k, the official way (k capped at the 1-based rank of the last retrieved positive)."""
    if len(positions) == 0:
        return np.zeros(len(ks))
    last = int(positions.max()) + 1
    return np.array([np.sum(positions < min(k, last)) / min(k, last) for k in ks], dtype=np.float64)


def compute_map(
    ranks: np.ndarray, ok: Sequence[np.ndarray], junk: Sequence[np.ndarray], ks: Sequence[int] = (1, 5, 10)
) -> RevisitedResult:
    """mAP and mP@k of rankings ``ranks`` ``(R, Q)`` (database indices, best first; R may be a truncated
    top-R) against each query's positives ``ok[q]`` and ignored ``junk[q]`` (index arrays)."""
    num_queries = ranks.shape[1]
    aps = np.full(num_queries, np.nan)
    prs = np.full((num_queries, len(ks)), np.nan)
    for query in range(num_queries):
        positives = np.asarray(ok[query], dtype=np.int64)
        if positives.size == 0:
            continue
        positions = _junk_free_positions(ranks[:, query], positives, np.asarray(junk[query], dtype=np.int64))
        aps[query] = average_precision(positions, positives.size)
        prs[query] = precision_at(positions, ks)
    scored = ~np.isnan(aps)
    mean_ap = float(aps[scored].mean()) if scored.any() else float("nan")
    mpr = prs[scored].mean(axis=0) if scored.any() else np.full(len(ks), np.nan)
    return RevisitedResult(mean_ap, aps, mpr, prs)


def protocol_sets(ground_truth: Sequence[dict], protocol: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(ok, junk)`` per query under protocol ``E``, ``M`` or ``H`` (as ``example_evaluate.py`` builds them).

    E: ok = easy, junk = junk + hard. M: ok = easy + hard, junk = junk. H: ok = hard, junk = junk + easy.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose E, M or H")
    parts = {
        "E": (("easy",), ("junk", "hard")),
        "M": (("easy", "hard"), ("junk",)),
        "H": (("hard",), ("junk", "easy")),
    }[protocol]
    ok, junk = [], []
    for entry in ground_truth:
        ok.append(np.concatenate([np.asarray(entry.get(k, []), dtype=np.int64) for k in parts[0]]))
        junk.append(np.concatenate([np.asarray(entry.get(k, []), dtype=np.int64) for k in parts[1]]))
    return ok, junk


class _Refused(pickle.UnpicklingError):
    """The pickle names a global (class or function): refused, never imported."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle makes without importing anything: lists, dicts, tuples, numbers, strings."""

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle's hook
        raise _Refused(f"{module}.{name}")


def load_ground_truth(path: str | Path) -> dict:
    """The revisited ground truth pickle (``gnd_roxford5k.pkl``): ``imlist``, ``qimlist``, ``gnd``.

    The file is untrusted: any class or function reference in it is refused (never imported).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not such a pickle, or one that names a class (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth not found: {path}; pass the folder holding gnd_<dataset>.pkl")
    try:
        data = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except _Refused as error:
        raise ValueError(
            f"{path} refers to {error}, which is not loaded (it could run code); the ground "
            "truth may hold only lists, dicts, numbers and strings"
        ) from None
    except Exception as error:  # truncated or not a pickle
        raise ValueError(f"{path} is not a readable ground-truth pickle ({type(error).__name__})") from None
    if not (isinstance(data, dict) and {"imlist", "qimlist", "gnd"} <= set(data)):
        raise ValueError(f"{path} lacks imlist, qimlist and gnd; is it a revisited Oxford/Paris ground truth?")
    return data
