"""Evaluation protocols on an :class:`EvalSession`: each takes its settings section of
:class:`~attmask.eval.config.EvalConfig` and returns a :class:`ProtocolResult` (a JSON-able record
and a one-line human summary). The CLI (``attmask eval <protocol>``) is a thin layer over these.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attmask.core.environment import loader_workers
from attmask.data.augment import eval_transform
from attmask.data.datasets import DatasetError, build_dataset
from attmask.eval.config import (
    DavisConfig,
    FewShotConfig,
    KnnConfig,
    LinearEvalConfig,
    RetrievalConfig,
    RobustnessConfig,
)
from attmask.eval.davis import evaluate_davis
from attmask.eval.fewshot import few_shot_knn
from attmask.eval.finetune import FinetuneConfig, finetune
from attmask.eval.knn import knn_sweep, knn_votes
from attmask.eval.linear import LinearProbeConfig, linear_probe, linear_probe_on_features
from attmask.eval.retrieval import retrieval
from attmask.eval.revisited_run import RevisitedSettings, revisited_retrieval
from attmask.eval.robustness import occlusion_accuracy
from attmask.eval.session import EvalSession


@dataclass
class ProtocolResult:
    """What a protocol measured.

    Attributes:
        record: JSON-able result (the CLI adds the session's provenance and writes it).
        summary: one human-readable line.
    """

    record: dict[str, Any]
    summary: str


def knn_protocol(session: EvalSession, config: KnnConfig | None = None) -> ProtocolResult:
    """Weighted k-NN (Wu et al. 2018) of ``config.features``, train split as the bank."""
    config = config or KnnConfig()
    kind, temperature = config.features, config.temperature
    bank, bank_labels = session.features("train", kind)
    queries, query_labels = session.features("test", kind)
    results = knn_sweep(
        bank.to(session.device),
        bank_labels,
        queries.to(session.device),
        query_labels,
        session.splits.num_classes,
        config.ks,
        temperature,
    )
    table = {str(k): asdict(result) for k, result in results.items()}
    main = results[20] if 20 in results else next(iter(results.values()))
    summary = (
        f"weighted {main.k}-NN top-1 {main.top1:.2f}% top-5 {main.top5:.2f}% "
        f"({len(query_labels)} queries, bank {len(bank_labels)}, {kind} features)"
    )
    return ProtocolResult({"protocol": "knn", "kind": kind, "temperature": temperature, "results": table}, summary)


def fewshot_protocol(session: EvalSession, config: FewShotConfig | None = None) -> ProtocolResult:
    """Few-shot k-NN (AttMask Table 5b): nu images per class, disjoint repeats."""
    config = config or FewShotConfig()
    kind, repeats, seed = config.features, config.repeats, config.seed
    bank, bank_labels = session.features("train", kind)
    queries, query_labels = session.features("test", kind)
    results = few_shot_knn(
        bank, bank_labels, queries, query_labels, session.splits.num_classes, config.shots, repeats, seed=seed
    )
    parts = ", ".join(f"nu={nu}: {r.mean:.2f}+-{r.std:.2f}%" for nu, r in results.items())
    return ProtocolResult(
        {
            "protocol": "fewshot",
            "kind": kind,
            "repeats": repeats,
            "seed": seed,
            "results": {str(nu): asdict(r) for nu, r in results.items()},
        },
        f"few-shot k-NN top-1 over {repeats} subsets: {parts}",
    )


def retrieval_protocol(session: EvalSession, config: RetrievalConfig | None = None) -> ProtocolResult:
    """Recall@k and mAP of every image of ``config.split`` against the others."""
    config = config or RetrievalConfig()
    kind, split, with_map = config.features, config.split, config.map
    features, labels = session.features(split, kind)
    result = retrieval(features.to(session.device), labels.to(session.device), config.ks, with_map)
    recall = ", ".join(f"R@{k} {value:.2f}%" for k, value in result.recall.items())
    mean_ap = f", mAP {result.mean_average_precision:.2f}%" if with_map else ""
    return ProtocolResult(
        {
            "protocol": "retrieval",
            "kind": kind,
            "split": split,
            "recall": {str(k): v for k, v in result.recall.items()},
            "map": result.mean_average_precision,
            "num_queries": result.num_queries,
        },
        f"retrieval on {result.num_queries} {split} images: {recall}{mean_ap}",
    )


Classifier = Callable[[Tensor], Tensor]


def _knn_classifier(session: EvalSession, kind: str, k: int, temperature: float) -> Classifier:
    bank, bank_labels = session.features("train", kind)
    bank, bank_labels = bank.to(session.device), bank_labels.to(session.device)

    def classify(features: Tensor) -> Tensor:
        return knn_votes(bank, bank_labels, features, session.splits.num_classes, k, temperature)

    return classify


def _linear_classifier(session: EvalSession, kind: str, config: LinearProbeConfig) -> Classifier:
    train, train_labels = session.features("train", kind)
    test, test_labels = session.features("test", kind)
    result = linear_probe_on_features(train, train_labels, test, test_labels, session.splits.num_classes, config)
    probe = result.classifier.to(session.device).eval()
    return lambda features: probe(features.to(session.device))


def _variant_sets(session: EvalSession, variants: dict[str, str]) -> dict[str, Any]:
    """Labelled folders (IN-9 style) with the training classes, by name."""
    sets = {}
    for name, folder in variants.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unsplit folder is used whole
            dataset = build_dataset(folder, "test", eval_transform(session.img_size))
        if list(dataset.classes) != session.splits.classes:
            raise DatasetError(
                f"variant {name!r} ({folder}) has classes {dataset.classes[:5]}, not the "
                f"training classes {session.splits.classes[:5]}; use the same class folders"
            )
        sets[name] = dataset
    return sets


def _loader(session: EvalSession, dataset: Any) -> torch.utils.data.DataLoader:
    """A plain sequential loader (every rank reads the whole data set)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=session.data.batch_size, num_workers=loader_workers(session.data.num_workers)
    )


def robustness_protocol(
    session: EvalSession,
    config: RobustnessConfig | None = None,
    linear: LinearProbeConfig | None = None,
    attention_model: torch.nn.Module | None = None,
    variants: dict[str, str] | None = None,
) -> ProtocolResult:
    """Top-1 under occlusion of the most attended patches (Table A2) and on variant folders.

    The classifier is fitted on the clean training split: weighted k-NN (``config.classifier``
    ``knn``) or a linear probe with ``linear`` (default settings when None) on cached features
    (``linear``). ``attention_model`` picks the patches (default: the evaluated backbone);
    ``variants`` maps names to labelled folders of the training classes. Every rank evaluates the
    whole test set.
    """
    config = config or RobustnessConfig()
    if config.classifier == "linear":
        linear = linear or LinearProbeConfig()
        kind = linear.kind_for(session.backbone.depth)
        classify, classifier = _linear_classifier(session, kind, linear), "linear probe"
    else:
        kind = config.features
        classify = _knn_classifier(session, kind, config.k, config.temperature)
        classifier = f"{config.k}-NN"
    attention = attention_model.to(session.device) if attention_model is not None else None
    occlusion = occlusion_accuracy(
        session.backbone,
        classify,
        _loader(session, session.splits.test),
        config.ratios,
        attention,
        kind,
        session.device,
        progress=session.progress,
    )
    variant_results = {
        variant: occlusion_accuracy(
            session.backbone, classify, _loader(session, dataset), (0.0,), None, kind, session.device
        )[0.0]
        for variant, dataset in _variant_sets(session, variants or {}).items()
    }
    parts = ", ".join(f"{int(round(r * 100))}%: {acc:.2f}" for r, acc in occlusion.items())
    extra = "".join(f", {variant}: {acc:.2f}" for variant, acc in variant_results.items())
    record = {
        "protocol": "robustness",
        "classifier": classifier,
        "kind": kind,
        "k": config.k,
        "temperature": config.temperature,
        "attention": "evaluated model" if attention_model is None else "separate model",
        "occlusion": {str(r): acc for r, acc in occlusion.items()},
        "variants": variant_results,
    }
    return ProtocolResult(record, f"{classifier} top-1 with the most attended patches blacked out ({parts}){extra}")


def linear_protocol(session: EvalSession, config: LinearEvalConfig | None = None) -> ProtocolResult:
    """DINO's linear probe: ``fast`` on cached centre-crop features, ``full`` with augmentation (``config.mode``)."""
    config = config or LinearEvalConfig()
    kind, mode = config.kind_for(session.backbone.depth), config.mode
    if mode == "fast":
        train, train_labels = session.features("train", kind)
        test, test_labels = session.features("test", kind)
        result = linear_probe_on_features(
            train.to(session.device),
            train_labels.to(session.device),
            test.to(session.device),
            test_labels.to(session.device),
            session.splits.num_classes,
            config,
        )
    elif mode == "full":
        result = linear_probe(
            session.backbone,
            session.splits.train,
            session.splits.test,
            session.splits.num_classes,
            config,
            session.device,
        )
    else:
        raise ValueError(f"unknown linear probe mode {mode!r}; choose fast or full")
    record = {
        "protocol": "linear",
        "mode": mode,
        "kind": kind,
        "config": asdict(config),
        "top1": result.top1,
        "top5": result.top5,
        "train_loss": result.train_loss,
        "lr": result.lr,
    }
    return ProtocolResult(
        record,
        f"linear probe ({mode}, {kind} features, {result.epochs} epochs) top-1 "
        f"{result.top1:.2f}% top-5 {result.top5:.2f}%",
    )


def finetune_protocol(session: EvalSession, config: FinetuneConfig | None = None) -> ProtocolResult:
    """End-to-end fine-tuning with layer-wise lr decay; top-1 / top-5 on the test split."""
    config = config or FinetuneConfig()
    result = finetune(
        session.backbone,
        session.splits.train,
        session.splits.test,
        session.splits.num_classes,
        config,
        session.device,
        session.progress,
    )
    record = {
        "protocol": "finetune",
        "config": asdict(config),
        "top1": result.top1,
        "top5": result.top5,
        "train_loss": result.train_loss,
        "history": result.history,
    }
    return ProtocolResult(
        record, f"fine-tuning ({result.epochs} epochs) top-1 {result.top1:.2f}% top-5 {result.top5:.2f}%"
    )


def revisited_protocol(session: EvalSession, config: RevisitedSettings | None = None) -> ProtocolResult:
    """Revisited Oxford / Paris retrieval of the data root ``session.data.source``: mAP E / M / H."""
    result = revisited_retrieval(session.backbone.eval(), session.data.source, config, session.device)
    maps = " / ".join(f"{result[f'map_{p}']:.2f}" for p in "EMH")
    return ProtocolResult(
        {"protocol": "revisited", **result},
        f"{result['dataset']}: mAP E / M / H {maps} ({result['num_queries']} queries, "
        f"{result['num_database']} database images)",
    )


def davis_protocol(
    session: EvalSession, config: DavisConfig | None = None, save_masks: Path | None = None
) -> ProtocolResult:
    """DAVIS 2017 label propagation on the root ``session.data.source``: J&F, J and F (percent);
    the predicted indexed PNGs go to ``save_masks`` when given."""
    config = config or DavisConfig()
    result = evaluate_davis(session.backbone, session.data.source, config, config.sequences, save_masks)
    return ProtocolResult(
        {"protocol": "davis", **result},
        f"DAVIS J&F-Mean {result['J&F-Mean']:.2f} (J {result['J-Mean']:.2f}, "
        f"F {result['F-Mean']:.2f}) over {len(result['sequences'])} sequences",
    )
