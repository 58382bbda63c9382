"""Measuring a model file: sizes raw and gzipped, accuracy and agreement with Keras, latency."""
from __future__ import annotations

import gzip
import io
import os
import time
from dataclasses import dataclass

import numpy as np

from .._keras import tf
from ..classifier import Classifier, TFLiteClassifier
from ..io.model_files import save_model
from ..metrics import classification_metrics
from ..tables import Column, format_table
from .prune import copy_model


@dataclass(frozen=True)
class EvalSet:
    """What every exported file is measured on: images uint8 (N, S, S, C) and labels (N,);
    ``reference`` (N, K) the Keras model's probabilities on them (for agreement); ``latency_runs``
    timed single-image calls (0 = no latency)."""

    images: np.ndarray
    labels: np.ndarray
    reference: np.ndarray | None = None
    latency_runs: int = 50


def gzip_size(data: bytes | str) -> int:
    """Size in bytes after gzip -9 of ``data`` (bytes) or of the file at path ``data``."""
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            data = f.read()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as g:
        g.write(data)
    return len(buf.getvalue())


def file_sizes(path: str) -> tuple[int, int]:
    """(raw bytes, gzip -9 bytes) of a file, or of all files under a folder (SavedModel)."""
    if os.path.isdir(path):
        raw = gz = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                r, g = file_sizes(os.path.join(root, name))
                raw, gz = raw + r, gz + g
        return raw, gz
    return os.path.getsize(path), gzip_size(path)


def keras_sizes(model, folder: str, name: str = "model", facts: dict | None = None) -> tuple[int, int]:
    """Save ``model`` (without optimizer state) as ``folder/<name>.keras``; its (raw, gzip) bytes."""
    path = os.path.join(folder, f"{name}.keras")
    save_model(copy_model(model), path, facts)
    return file_sizes(path)


def median_latency_ms(fn, sample: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    """Median wall time of ``fn(sample)`` in milliseconds over ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        fn(sample)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(sample)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def keras_latency_ms(model, image: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    """Median per-image latency (ms) of a Keras model called on a batch of one (graph function)."""
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True, autograph=False)
    x = tf.constant(np.asarray(image, np.float32)[None])
    return median_latency_ms(lambda v: fn(v).numpy(), x, runs, warmup)


def evaluate_classifier(clf: Classifier, evalset: EvalSet) -> dict:
    """Accuracy on the evaluation images; with ``evalset.reference``: label agreement with it and
    the largest absolute probability difference; median single-image latency (ms)."""
    proba = clf.predict_proba(evalset.images)
    out = {"accuracy": float(classification_metrics(evalset.labels, proba, clf.threshold)["accuracy"]),
           "n": int(len(evalset.labels))}
    if evalset.reference is not None:
        out["agreement"] = float(np.mean(clf.decide(proba) == clf.decide(evalset.reference)))
        out["max_prob_diff"] = float(np.max(np.abs(proba - evalset.reference)))
    if evalset.latency_runs:
        one = np.asarray(evalset.images[:1])
        runner = clf.run if isinstance(clf, TFLiteClassifier) else clf.predict_proba
        out["latency_ms"] = median_latency_ms(runner, one, runs=evalset.latency_runs)
    return out


# The columns of every table of a converted model (size, accuracy, agreement, speed), shared so
# that the export and sparse tables name and format them alike.
SIZE_KB = Column("size KB", "size_bytes", "kb")
GZIP_KB = Column("gzip KB", "gzip_bytes", "kb")
ACCURACY = Column("acc", "accuracy", "{:.3f}")
AGREEMENT = Column("agree", "agreement", "{:.3f}")
MS_PER_IMAGE = Column("ms/img", "latency_ms", "{:.2f}")

EXPORT_COLUMNS = (
    Column("format", "format"), Column("quant", "quantization"), SIZE_KB, GZIP_KB, ACCURACY, AGREEMENT,
    Column("max|dp|", "max_prob_diff", "{:.4f}"), MS_PER_IMAGE, Column("input", "input_dtype"),
)


def export_table(rows: list[dict]) -> str:
    """The export measurements as a fixed-width console table."""
    return format_table(rows, EXPORT_COLUMNS)
