"""Sparse inference for pruned models: what XNNPack needs, the TFLite conversion, and the check.

LiteRT runs float models through its XNNPack delegate, which switches to *sparse inference*
(NCHW layout, sparse 1x1 convolutions; "Fast Sparse ConvNets", Elsen et al. 2019) by itself when
all of these hold (XNNPack ``xnn_subgraph_rewrite_for_nchw``, the delegate sets the hint when the
file stores sparse weights):

* the weights are stored sparse, i.e. the file was converted with
  ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY`` (``DENSIFY`` operators) - :func:`convert_sparse`;
* the subgraph from the first convolution to the global average pooling contains only 1x1
  convolutions, 3x3/5x5 depthwise convolutions with stride 1 or 2 and **symmetric** padding, adds,
  multiplies and element-wise activations, and starts with a 3x3 stride-2 convolution with padding
  1 on each side and 3 input channels;
* at least 2/3 of the 1x1 convolution weights in that subgraph are zero;
* everything is float32 (or float16): quantized (int8) operators never run sparse.

Keras' MobileNetV2 pads its five stride-2 layers asymmetrically (TensorFlow "same": 0 before,
1 after), so XNNPack keeps it dense. :func:`tfxai.models.symmetric_stride2_padding` rebuilds a model with
padding 1 on each side for those layers (same output shapes, same weights); tfxai builds such a
MobileNetV2 with ``build_model("mobilenet_v2", ..., padding="symmetric")``. For a model trained
with asymmetric padding the rebuilt model computes on a grid shifted by one pixel, so its
predictions change a little: train with symmetric padding instead when sparse inference matters.

tfmot's ``PruneForLatencyOnXNNPack`` policy (``tfxai prune --policy latency``) checks the same
structure on the Keras model and prunes only the 1x1 convolutions.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import tensorflow_model_optimization as tfmot
from ai_edge_litert.interpreter import Interpreter

from .._keras import keras
from ..classifier import TFLiteClassifier
from ..tables import Column, format_table
from .measure import ACCURACY, AGREEMENT, GZIP_KB, MS_PER_IMAGE, SIZE_KB, EvalSet, evaluate_classifier, gzip_size
from .tflite import Calibration, convert_tflite

log = logging.getLogger(__name__)

SPARSE_QUANTIZATIONS = ("float32", "int8")


def xnnpack_sparse_problem(model) -> str | None:
    """None when tfmot's ``PruneForLatencyOnXNNPack`` accepts ``model`` (its layers form a
    subgraph XNNPack can run sparse), else tfmot's reason as one line."""
    try:
        tfmot.sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
    except ValueError as err:
        return str(err).splitlines()[0]
    return None


def sparsity_1x1(model) -> float:
    """Share of exact zeros in the kernels of the model's 1x1 ``Conv2D`` layers (what XNNPack
    counts: sparse inference needs more than 2/3)."""
    total = zeros = 0
    for layer in model.layers:
        layer = getattr(layer, "layer", layer)  # a pruning wrapper
        if (isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
                and tuple(layer.kernel_size) == (1, 1)):
            k = layer.kernel.numpy()
            total += k.size
            zeros += int(np.count_nonzero(k == 0))
    return zeros / total if total else 0.0


def convert_sparse(model, quantization: str = "float32", calibration: Calibration | None = None) -> bytes:
    """Convert a (pruned, stripped) Keras model to TFLite with ``Optimize.EXPERIMENTAL_SPARSITY``
    (:func:`tfxai.compress.tflite.convert_tflite` with ``sparse=True``): weights with enough zeros
    are stored sparse and densified at load (``DENSIFY``), which lets XNNPack run float32 files
    sparse. quantization: "float32" or "int8" (XNNPack has no sparse int8 kernels, so this only
    changes how the weights are stored)."""
    if quantization not in SPARSE_QUANTIZATIONS:
        raise ValueError(f"sparse quantization must be one of {SPARSE_QUANTIZATIONS}, got {quantization!r}")
    return convert_tflite(model, quantization, calibration, sparse=True)


def count_densify_ops(tflite_bytes: bytes) -> int:
    """How many ``DENSIFY`` operators a TFLite flatbuffer holds (one per sparse-stored weight)."""
    interp = Interpreter(model_content=tflite_bytes)
    return sum(1 for op in interp._get_ops_details() if op["op_name"] == "DENSIFY")


# ----------------------------------------------------------------------------- measuring
SPARSE_VARIANTS = ("float32", "float32_sparse", "int8", "int8_sparse")


def zero_smallest_1x1(model, sparsity: float) -> None:
    """Set the ``sparsity`` share of smallest-magnitude weights of every 1x1 ``Conv2D`` kernel to
    zero, in place: an untrained model with the zeros of an 80 %-pruned one, for timing only
    (latency does not depend on training; accuracy does)."""
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    for layer in model.layers:
        if (isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
                and tuple(layer.kernel_size) == (1, 1)):
            weights = layer.get_weights()
            k = weights[0]
            cut = int(round(sparsity * k.size))
            if cut:
                order = np.argsort(np.abs(k), axis=None)[:cut]
                flat = k.reshape(-1)
                flat[order] = 0.0
            layer.set_weights(weights)


def sparse_variants(model, calibration: Calibration, variants=SPARSE_VARIANTS) -> dict[str, bytes]:
    """The TFLite files the sparse benchmark compares: plain float32 / int8 (as
    :func:`tfxai.compress.tflite.convert_tflite`) and the same with ``EXPERIMENTAL_SPARSITY``."""
    out = {}
    for v in variants:
        q = v.replace("_sparse", "")
        out[v] = convert_tflite(model, q, calibration if q == "int8" else None, sparse=v.endswith("_sparse"))
    return out


def measure_sparse_inference(files: dict[str, bytes], folder: str, eval_images: np.ndarray,
                             eval_labels: np.ndarray | None, reference_proba: np.ndarray | None,
                             threshold: float = 0.5, threads=(1, 2), latency_runs: int = 100,
                             rounds: int = 10) -> list[dict]:
    """For each TFLite variant (name -> flatbuffer) and each LiteRT thread count: median
    single-image latency (ms), size raw and gzipped, DENSIFY op count, and (when ``eval_labels``
    / ``reference_proba`` are given) accuracy and label agreement with the Keras model on
    ``eval_images`` uint8 (N, S, S, C).

    Latency: after warm-up, ``latency_runs`` timed calls per variant, taken in ``rounds`` rounds
    that visit the variants in turn, so that load from other processes falls on all of them
    alike; ``speedup`` is against the first variant at the same thread count."""
    os.makedirs(folder, exist_ok=True)
    rows = []
    size = int(eval_images.shape[1])
    names = ["0", "1"] if reference_proba is None else [str(i) for i in range(reference_proba.shape[1])]
    one = np.asarray(eval_images[:1])
    per_round = max(1, latency_runs // max(1, rounds))
    for t in threads:
        clfs = {}
        for name, data in files.items():
            path = os.path.join(folder, f"{name}.tflite")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
            clfs[name] = TFLiteClassifier(path=path, class_names=names, image_size=size,
                                          channels=int(eval_images.shape[3]), threshold=threshold, num_threads=t)
            for _ in range(5):
                clfs[name].run(one)  # warm-up
        times = {name: [] for name in files}
        for _ in range(max(1, rounds)):
            for name, clf in clfs.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    clf.run(one)
                    times[name].append(time.perf_counter() - t0)
        base = None
        for name, data in files.items():
            row = {"variant": name, "threads": t, "size_bytes": len(data), "gzip_bytes": gzip_size(data),
                   "densify_ops": count_densify_ops(data), "latency_ms": float(np.median(times[name]) * 1000),
                   "latency_runs": len(times[name])}
            if eval_labels is not None and t == threads[0]:
                row.update(evaluate_classifier(clfs[name], EvalSet(eval_images, eval_labels, reference_proba, 0)))
            base = base or row["latency_ms"]
            row["speedup"] = base / row["latency_ms"]
            rows.append(row)
    return rows


SPARSE_COLUMNS = (
    Column("variant", "variant"), Column("threads", "threads", "{:d}"), SIZE_KB, GZIP_KB,
    Column("densify", "densify_ops", "{:d}"), MS_PER_IMAGE, Column("x vs f32", "speedup", "{:.2f}"),
    ACCURACY, AGREEMENT,
)


def format_sparse_table(rows: list[dict]) -> str:
    """The sparse-inference measurements as a console table."""
    return format_table(rows, SPARSE_COLUMNS)
