"""Evaluation protocols on an :class:`EvalSession`: each returns a JSON-able result and a
one-line human summary. The CLI (``attmask eval <protocol>``) is a thin layer over these.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from attmask.data.augment import eval_transform
from attmask.data.datasets import DatasetError, build_dataset
from attmask.eval.fewshot import DEFAULT_SHOTS, few_shot_knn
from attmask.eval.finetune import FinetuneConfig, finetune
from attmask.eval.knn import knn_sweep, knn_votes
from attmask.eval.linear import LinearProbeConfig, linear_probe, linear_probe_on_features
from attmask.eval.retrieval import DEFAULT_KS, retrieval
from attmask.eval.robustness import DEFAULT_RATIOS, occlusion_accuracy
from attmask.eval.session import EvalSession

Outcome = tuple[dict[str, Any], str]


def knn_protocol(session: EvalSession, ks: Sequence[int] = (10, 20, 100, 200), temperature: float = 0.07,
                 kind: str = "cls") -> Outcome:
    """Weighted k-NN (Wu et al. 2018) of ``kind`` features, train split as the bank."""
    bank, bank_labels = session.features("train", kind)
    queries, query_labels = session.features("test", kind)
    results = knn_sweep(bank.to(session.device), bank_labels, queries.to(session.device), query_labels,
                        session.splits.num_classes, ks, temperature)
    table = {str(k): asdict(result) for k, result in results.items()}
    main = results[20] if 20 in results else next(iter(results.values()))
    summary = (f"weighted {main.k}-NN top-1 {main.top1:.2f}% top-5 {main.top5:.2f}% "
               f"({len(query_labels)} queries, bank {len(bank_labels)}, {kind} features)")
    return {"protocol": "knn", "kind": kind, "temperature": temperature, "results": table}, summary


def fewshot_protocol(session: EvalSession, shots: Sequence[int] = DEFAULT_SHOTS, repeats: int = 5,
                     seed: int = 0, kind: str = "cls") -> Outcome:
    """Few-shot k-NN (AttMask Table 5b): nu images per class, disjoint repeats."""
    bank, bank_labels = session.features("train", kind)
    queries, query_labels = session.features("test", kind)
    results = few_shot_knn(bank, bank_labels, queries, query_labels, session.splits.num_classes,
                           shots, repeats, seed=seed)
    parts = ", ".join(f"nu={nu}: {r.mean:.2f}+-{r.std:.2f}%" for nu, r in results.items())
    return ({"protocol": "fewshot", "kind": kind, "repeats": repeats, "seed": seed,
             "results": {str(nu): asdict(r) for nu, r in results.items()}},
            f"few-shot k-NN top-1 over {repeats} subsets: {parts}")


def retrieval_protocol(session: EvalSession, ks: Sequence[int] = DEFAULT_KS, split: str = "test",
                       kind: str = "cls", with_map: bool = True) -> Outcome:
    """Recall@k and mAP of every image of ``split`` against the others."""
    features, labels = session.features(split, kind)
    result = retrieval(features.to(session.device), labels.to(session.device), ks, with_map)
    recall = ", ".join(f"R@{k} {value:.2f}%" for k, value in result.recall.items())
    mean_ap = f", mAP {result.mean_average_precision:.2f}%" if with_map else ""
    return ({"protocol": "retrieval", "kind": kind, "split": split,
             "recall": {str(k): v for k, v in result.recall.items()},
             "map": result.mean_average_precision, "num_queries": result.num_queries},
            f"retrieval on {result.num_queries} {split} images: {recall}{mean_ap}")


def _knn_classifier(session: EvalSession, kind: str, k: int, temperature: float):
    bank, bank_labels = session.features("train", kind)
    bank, bank_labels = bank.to(session.device), bank_labels.to(session.device)

    def classify(features: Tensor) -> Tensor:
        return knn_votes(bank, bank_labels, features, session.splits.num_classes, k, temperature)
    return classify


def _variant_sets(session: EvalSession, variants: dict[str, str]) -> dict[str, Any]:
    """Labelled folders (IN-9 style) with the training classes, by name."""
    sets = {}
    for name, folder in variants.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unsplit folder is used whole
            dataset = build_dataset(folder, "test", eval_transform(session.img_size))
        if list(dataset.classes) != session.splits.classes:
            raise DatasetError(f"variant {name!r} ({folder}) has classes {dataset.classes[:5]}, not the "
                               f"training classes {session.splits.classes[:5]}; use the same class folders")
        sets[name] = dataset
    return sets


def _linear_classifier(session: EvalSession, kind: str, config: LinearProbeConfig):
    train, train_labels = session.features("train", kind)
    test, test_labels = session.features("test", kind)
    result = linear_probe_on_features(train, train_labels, test, test_labels, session.splits.num_classes, config)
    return result.classifier.to(session.device).eval()


def robustness_protocol(
    session: EvalSession, ratios: Sequence[float] = DEFAULT_RATIOS, attention_model: torch.nn.Module | None = None,
    kind: str = "cls", k: int = 20, temperature: float = 0.07, variants: dict[str, str] | None = None,
    linear: LinearProbeConfig | None = None,
) -> Outcome:
    """Top-1 under occlusion of the most attended patches (Table A2) and on variant folders.

    The classifier is fitted on the clean training split: weighted k-NN (default) or, with
    ``linear``, a linear probe on cached features. Every rank evaluates the whole test set.
    """
    if linear is not None:
        kind = linear.kind_for(session.backbone.depth)
        probe = _linear_classifier(session, kind, linear)
        classify = lambda features: probe(features.to(session.device))  # noqa: E731
    else:
        classify = _knn_classifier(session, kind, k, temperature)
    name = "linear probe" if linear is not None else f"{k}-NN"
    attention = attention_model.to(session.device) if attention_model is not None else None
    test_loader = torch.utils.data.DataLoader(session.splits.test, batch_size=session.data.batch_size,
                                              num_workers=session.data.num_workers)
    occlusion = occlusion_accuracy(session.backbone, classify, test_loader, ratios, attention, kind,
                                   session.device, progress=session.progress)
    variant_results = {}
    for name, dataset in _variant_sets(session, variants or {}).items():
        loader = torch.utils.data.DataLoader(dataset, batch_size=session.data.batch_size,
                                             num_workers=session.data.num_workers)
        variant_results[name] = occlusion_accuracy(session.backbone, classify, loader, (0.0,), None,
                                                   kind, session.device)[0.0]
    parts = ", ".join(f"{int(round(r * 100))}%: {acc:.2f}" for r, acc in occlusion.items())
    extra = "".join(f", {name}: {acc:.2f}" for name, acc in variant_results.items())
    return ({"protocol": "robustness", "classifier": name, "kind": kind, "k": k, "temperature": temperature,
             "attention": "evaluated model" if attention_model is None else "separate model",
             "occlusion": {str(r): acc for r, acc in occlusion.items()}, "variants": variant_results},
            f"{name} top-1 with the most attended patches blacked out ({parts}){extra}")


def _linear_summary(result: Any, mode: str, kind: str) -> str:
    return (f"linear probe ({mode}, {kind} features, {result.epochs} epochs) top-1 {result.top1:.2f}% "
            f"top-5 {result.top5:.2f}%")


def linear_protocol(session: EvalSession, config: LinearProbeConfig, mode: str = "fast") -> Outcome:
    """DINO's linear probe: ``fast`` on cached centre-crop features, ``full`` with augmentation."""
    kind = config.kind_for(session.backbone.depth)
    if mode == "fast":
        train, train_labels = session.features("train", kind)
        test, test_labels = session.features("test", kind)
        result = linear_probe_on_features(train.to(session.device), train_labels.to(session.device),
                                          test.to(session.device), test_labels.to(session.device),
                                          session.splits.num_classes, config)
    elif mode == "full":
        result = linear_probe(session.backbone, session.splits.train, session.splits.test,
                              session.splits.num_classes, config, session.device)
    else:
        raise ValueError(f"unknown linear probe mode {mode!r}; choose fast or full")
    return ({"protocol": "linear", "mode": mode, "kind": kind, "config": asdict(config), "top1": result.top1,
             "top5": result.top5, "train_loss": result.train_loss, "lr": result.lr},
            _linear_summary(result, mode, kind))


def finetune_protocol(session: EvalSession, config: FinetuneConfig) -> Outcome:
    """End-to-end fine-tuning with layer-wise lr decay; top-1 / top-5 on the test split."""
    result = finetune(session.backbone, session.splits.train, session.splits.test,
                      session.splits.num_classes, config, session.device, session.progress)
    return ({"protocol": "finetune", "config": asdict(config), "top1": result.top1, "top5": result.top5,
             "train_loss": result.train_loss, "history": result.history},
            f"fine-tuning ({result.epochs} epochs) top-1 {result.top1:.2f}% top-5 {result.top5:.2f}%")
