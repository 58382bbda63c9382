"""Quantization-aware training with tensorflow-model-optimization, optionally sparsity-preserving
(PQAT: ``Default8BitPrunePreserveQuantizeScheme``), so that a pruned model keeps its zeros while it
learns int8 weights and activation ranges; convert the result with
``tfxai.compress.tflite.convert_tflite(model, "int8", ...)``.

Which layers are quantized: every layer tfmot's default 8-bit registry supports (Conv2D,
DepthwiseConv2D, Dense, ReLU, Add, pooling, ...) and BatchNormalization, which tfmot folds into the
conv before it. The in-model preprocessing
(``Rescaling``, the grey-to-RGB ``Concatenate``) gets tfmot's output-only config
(``Default8BitOutputQuantizeConfig``):
tfmot has no config for these layers and refuses the whole model otherwise, and without an output
quantizer the converter mis-scales that tensor (measured: the int8 file then predicts one class).
"""
from __future__ import annotations

import logging

import numpy as np

import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs, default_8bit_quantize_registry, default_8bit_quantize_scheme)

from .._keras import keras
from .prune import copy_model, is_pruning_wrapped
from .tflite import representative_sample

log = logging.getLogger(__name__)


def quantize_aware(model: keras.Model, preserve_sparsity: bool = True,
                   calibration_images: np.ndarray | None = None, calibration_count: int = 256,
                   seed: int = 0) -> keras.Model:
    """A quantization-aware copy of a plain (stripped) Keras model; the input model is untouched.

    preserve_sparsity: use tfmot's prune-preserving scheme, which keeps every zero weight at zero
    during training (for a model pruned with :mod:`tfxai.compress.prune`). calibration_images: uint8
    (N, S, S, C) training images; ``calibration_count`` of them, drawn with ``seed``, set the
    starting activation ranges (:func:`calibrate_ranges`; pass them unless the fine-tuning runs for
    thousands of steps). Compile and fit the result like any model, then convert it with
    ``convert_tflite(..., "int8", ...)``.
    """
    if is_pruning_wrapped(model):
        raise ValueError("strip the pruning wrappers first (tfxai.compress.prune.strip)")
    q = tfmot.quantization.keras
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    output_only = default_8bit_quantize_configs.Default8BitOutputQuantizeConfig

    def annotate(layer):
        # BatchNormalization is not in the registry: tfmot's layout transforms fold it into the
        # conv before it, as quantize_annotate_model would.
        if registry.supports(layer) or isinstance(layer, keras.layers.BatchNormalization):
            return q.quantize_annotate_layer(layer)
        log.info("quantization-aware training quantizes only the output of %s (%s)", layer.name, type(layer).__name__)
        return q.quantize_annotate_layer(layer, quantize_config=output_only())

    source = copy_model(model)
    annotated = keras.models.clone_model(source, clone_function=annotate)
    annotated.set_weights(source.get_weights())
    scheme = (tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme() if preserve_sparsity
              else default_8bit_quantize_scheme.Default8BitQuantizeScheme())
    with q.quantize_scope({"Default8BitOutputQuantizeConfig": output_only}):
        qat_model = q.quantize_apply(annotated, scheme)
    if calibration_images is not None:
        calibrate_ranges(qat_model, source, representative_sample(calibration_images, calibration_count, seed))
    return qat_model


def calibrate_ranges(qat_model: keras.Model, template: keras.Model, images: np.ndarray,
                     batch_size: int = 32) -> int:
    """Start every activation fake-quant range at the range ``template`` (the model ``qat_model``
    was made from) produces on ``images``; returns how many ranges were set.

    Why: tfmot starts them at [-6, 6] and moves them by an EMA with decay 0.999, so after a short
    fine-tuning (a few hundred steps) they are still about [-6, 6]. MobileNetV2's linear
    bottlenecks exceed that; clipped there, an 80%-pruned MobileNetV2 fell to predicting one class
    after one epoch (measured on the chest X-rays).
    """
    images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"calibration images must be a non-empty (N, S, S, C) array, got {images.shape}")
    layers = [layer for layer in template.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(template.inputs, [layer.output for layer in layers])
    lo = {layer.name: np.inf for layer in layers}
    hi = {layer.name: -np.inf for layer in layers}
    for i in range(0, len(images), batch_size):
        outs = probe(images[i:i + batch_size].astype(np.float32), training=False)
        for layer, out in zip(layers, outs):
            v = out.numpy()
            lo[layer.name] = min(lo[layer.name], float(v.min()))
            hi[layer.name] = max(hi[layer.name], float(v.max()))
    count = 0
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        if inner is None or inner.name not in lo:
            continue
        for var in wrapper.weights:
            leaf = var.name.split("/")[-1].split(":")[0]
            if leaf in ("output_min", "post_activation_min"):
                var.assign(min(lo[inner.name], 0.0))  # a quantized range always holds 0
                count += 1
            elif leaf in ("output_max", "post_activation_max"):
                var.assign(max(hi[inner.name], 0.0))
    return count


def plain_weights(qat_model: keras.Model, template: keras.Model) -> keras.Model:
    """A plain copy of ``template`` (the model ``qat_model`` was made from) carrying the QAT
    model's float weights: for saving, measuring sparsity and float conversion."""
    plain = copy_model(template)
    # The wrappers keep the wrapped layers' variable names (``conv/kernel:0``), so names match.
    trained = {w.name: w for w in qat_model.weights}
    missing = [w.name for w in plain.weights if w.name not in trained]
    if missing:
        raise ValueError(f"the quantization-aware model has no weights named {missing[:3]}: was it made "
                         f"from {template.name!r}?")
    for w in plain.weights:
        w.assign(trained[w.name])
    return plain
