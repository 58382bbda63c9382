"""TFLite export (float32 / dynamic-range / float16 / full-integer int8), SavedModel and ONNX,
every file measured: size raw and gzipped, accuracy, agreement with Keras, latency under LiteRT.

Android-ready: each ``<name>.tflite`` gets a ``<name>.json`` beside it (class names, image size,
channels, resize mode, threshold, the in-model normalization, input/output tensor details) and the
folder gets a ``labels.txt`` (one class name per line, index order). Every model takes raw pixels
(the rescaling is inside the graph), so an app feeds the decoded image as it is: float32 in
[0, 255] for float32/dynamic/float16 files, uint8 for int8 files (input scale 1, zero point 0:
calibration includes an all-black and an all-white image to pin the input range to [0, 255]).
The int8 output is uint8 probabilities (scale 1/256); :class:`TFLiteClassifier` dequantizes it.

Inference uses ``ai_edge_litert.interpreter.Interpreter`` (``tf.lite.Interpreter`` is deprecated).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .._keras import keras, tf
from ..classifier import LABELS_NAME, keras_classifier, load_classifier
from ..errors import DataError
from ..io.atomic import write_atomic, write_atomic_dir, write_bytes, write_json, write_text
from ..model_card import SAVED_MODEL_EXTRA, write_card_files
from .measure import EvalSet, evaluate_classifier, file_sizes, keras_latency_ms, keras_sizes

log = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "dynamic", "float16", "int8")


def parse_quantizations(text: str) -> tuple[str, ...]:
    """``"all"`` or a comma list such as ``"float16,int8"`` -> a tuple of QUANTIZATIONS names."""
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if items == ["all"]:
        return QUANTIZATIONS
    bad = [t for t in items if t not in QUANTIZATIONS]
    if bad or not items:
        raise ValueError(f"quantization must be 'all' or a comma list of {list(QUANTIZATIONS)}, "
                         f"got {text!r}")
    return tuple(dict.fromkeys(items))


# ----------------------------------------------------------------------------- conversion
@dataclass(frozen=True)
class Calibration:
    """int8 calibration: ``images`` uint8 (N, S, S, C) (training images), ``count`` of them drawn
    with ``seed``."""

    images: np.ndarray
    count: int = 200
    seed: int = 0


def representative_sample(images: np.ndarray, count: int = 200, seed: int = 0) -> np.ndarray:
    """Up to ``count`` calibration images (uint8 (N, S, S, C)) drawn with ``seed``, plus one
    all-black and one all-white image so that int8 input quantization is exactly [0, 255]."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"representative images must be a non-empty (N, S, S, C) array, got shape {images.shape}")
    if count < 1:
        raise ValueError(f"calibration count must be >= 1, got {count!r}")
    idx = np.random.default_rng(seed).permutation(len(images))[:count]
    extremes = np.stack([np.zeros(images.shape[1:], images.dtype), np.full(images.shape[1:], 255, images.dtype)])
    return np.concatenate([extremes, images[np.sort(idx)]])


def float_layers(model, outer: str = "") -> dict[str, str]:
    """{name prefix (``"<model>/<nested model>/<layer>/"``) of the converted tensors that an in-model
    preprocessing layer (:mod:`tfxai.preprocessing`) of ``model`` computes, nested models included:
    the layer's class and settings}: what an int8 conversion keeps in float32."""
    from ..preprocessing import SERIALIZABLE_LAYERS

    here = f"{outer}{model.name}/"
    out = {}
    for layer in model.layers:
        if isinstance(layer, tuple(SERIALIZABLE_LAYERS.values())):
            settings = {k: v for k, v in layer.get_config().items() if k != "name"}
            out[f"{here}{layer.name}/"] = f"{type(layer).__name__} {json.dumps(settings, sort_keys=True, default=str)}"
        elif isinstance(layer, keras.Model):
            out.update(float_layers(layer, here))
    return out


def _quantize_keeping_float(calibrated: bytes, layers: dict[str, str], sparse: bool) -> bytes:
    """Quantize a calibrated flatbuffer to int8 (uint8 input and output) except the ops whose
    tensors start with one of the prefixes of ``layers`` (:func:`float_layers`), which stay float32
    between a DEQUANTIZE and a QUANTIZE.

    Why: the preprocessing layers divide (DIV) and take square roots (SQRT). MediaPipe 0.10.21,
    the version Android apps pin, runs an older TFLite whose DIV has no int8 kernel (Invoke fails:
    RET_CHECK inference_interpreter_delegate_runner.cc:253) and which does not know SQRT's int8
    version (the interpreter refuses the file); both run in float32. TensorFlow's converter has no
    public switch for this: its own quantizer (``mlir_quantize``, what ``TFLiteConverter`` and the
    QuantizationDebugger's selective quantization call) takes the list of tensors to keep float.
    """
    from tensorflow.lite.python.convert import mlir_quantize, mlir_sparsify

    names = [d["name"] for d in Interpreter(model_content=calibrated).get_tensor_details()]
    prefixes = tuple(layers)
    keep = sorted({n for n in names if any(part.startswith(prefixes) for part in n.split(";"))})
    named = {p for p in prefixes if any(p in n for n in keep)}
    # The converter computes identical weight-free layers on the same input once (an ensemble's
    # members share their preprocessing): those tensors carry the first layer's name only.
    found = {layers[p] for p in named}
    missing = [p for p in prefixes if p not in named and layers[p] not in found]
    if missing:
        raise RuntimeError(f"no converted tensor comes from the preprocessing layer(s) {missing}; "
                           f"cannot keep them in float32")
    model = mlir_quantize(calibrated, input_data_type=tf.uint8, output_data_type=tf.uint8, denylisted_nodes=keep)
    return mlir_sparsify(model) if sparse else model


def convert_tflite(model, quantization: str = "float32", calibration: Calibration | None = None,
                   sparse: bool = False) -> bytes:
    """Convert a Keras model (raw [0, 255] float32 input) to a TFLite flatbuffer.

    quantization: "float32" (none), "dynamic" (int8 weights, float activations), "float16"
    (float16 weights), "int8" (full integer, uint8 input and output; needs ``calibration``; the
    in-model preprocessing layers, if any, stay float32 inside the file: see
    :func:`_quantize_keeping_float`).
    sparse: also ``Optimize.EXPERIMENTAL_SPARSITY``: weights with enough zeros (a pruned model) are
    stored sparse (see :mod:`tfxai.compress.sparse`).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    extra = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    converter.optimizations = extra
    if quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT, *extra]
    elif quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT, *extra]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if calibration is None:
            raise DataError("int8 quantization calibrates on training images: none were given")
        sample = representative_sample(calibration.images, calibration.count, calibration.seed).astype(np.float32)

        def representative():
            for i in range(len(sample)):
                yield [sample[i:i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT, *extra]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        layers = float_layers(model)
        if layers:
            # Calibrate only, then quantize leaving the preprocessing float; sparsity encoding comes
            # last (encoding the calibrated model first broke the quantized one: 1 kB, wrong outputs).
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter._experimental_calibrate_only = True
            return _quantize_keeping_float(converter.convert(), layers, sparse)
    return converter.convert()


def _tensor_info(detail: dict) -> dict:
    scale, zero = detail.get("quantization", (0.0, 0))
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(s) for s in detail["shape_signature"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero)}}


def write_sidecar(tflite_path: str, config: dict) -> str:
    """Write ``labels.txt`` and ``<name>.json`` beside ``tflite_path``; returns the JSON path.

    The JSON is ``config`` plus the file's input/output tensor names, dtypes, shapes and
    quantization, read from the flatbuffer itself."""
    if "class_names" not in config:
        raise ValueError(f"config for {tflite_path!r} needs class_names, got keys {sorted(config)}")
    interp = Interpreter(model_path=tflite_path)
    meta = dict(config)
    meta["model_file"] = os.path.basename(tflite_path)
    meta["inputs"] = [_tensor_info(d) for d in interp.get_input_details()]
    meta["outputs"] = [_tensor_info(d) for d in interp.get_output_details()]
    meta["signatures"] = {k: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"])}
                          for k, v in interp.get_signature_list().items()}
    folder = os.path.dirname(os.path.abspath(tflite_path))

    write_text(os.path.join(folder, LABELS_NAME), "".join(f"{name}\n" for name in config["class_names"]))
    json_path = os.path.splitext(tflite_path)[0] + ".json"
    write_json(json_path, meta)
    return json_path


def export_tflite(model, path: str, quantization: str = "float32", calibration: Calibration | None = None,
                  facts: dict | None = None) -> str:
    """Convert (see :func:`convert_tflite`), write ``path`` atomically (a failed conversion leaves
    nothing under the final name) and, with ``facts`` (:func:`tfxai.classifier.model_facts`), its
    ``labels.txt`` and ``.json`` sidecars. Returns ``path``."""
    if not path.endswith(".tflite"):
        raise ValueError(f"TFLite path must end in .tflite, got {path!r}")
    data = convert_tflite(model, quantization, calibration)
    write_bytes(path, data)
    if facts is not None:
        write_sidecar(path, {**facts, "quantization": quantization})
    log.info("wrote %s (%s, %d bytes)", path, quantization, len(data))
    return path


def export_saved_model(model, folder: str, card: dict | None = None) -> str:
    """A TensorFlow SavedModel (serving signature ``serving_default``) in ``folder``, written
    atomically: a killed export leaves no ``folder`` or a complete one, never ``variables/``
    without ``saved_model.pb``. With a model ``card``, ``model_card.json`` and ``.md`` in its
    ``assets.extra/`` (SavedModel's place for files that travel with the model and that the graph
    does not load)."""
    def writer(tmp: str) -> None:
        tf.saved_model.save(model, tmp)
        if card is not None:
            write_card_files(os.path.join(tmp, SAVED_MODEL_EXTRA), card)

    write_atomic_dir(folder, writer)
    return folder


def export_onnx(model, path: str) -> str | None:
    """ONNX through tf2onnx when it is importable; None (logged) when it is not installed."""
    try:
        import tf2onnx
    except ImportError:
        log.info("tf2onnx is not installed; skipping ONNX export")
        return None
    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image"),)
    return write_atomic(path, lambda tmp: tf2onnx.convert.from_keras(model, input_signature=spec, opset=13,
                                                                     output_path=tmp))


# ----------------------------------------------------------------------------- measured export
def export_measured(model, path: str, quantization: str, calibration: Calibration | None, evalset: EvalSet,
                    facts: dict, label: str | None = None) -> dict:
    """Write one ``.tflite`` (+ sidecars) and measure it on ``evalset`` (agreement against
    ``evalset.reference``, the Keras model's probabilities): one row of :func:`export_and_measure`.
    ``label`` names the row's quantization when it differs from ``quantization`` (e.g. "int8_pqat")."""
    export_tflite(model, path, quantization, calibration, facts)
    clf = load_classifier(path)
    raw, gz = file_sizes(path)
    return {"format": "tflite", "quantization": label or quantization, "path": path, "size_bytes": raw,
            "gzip_bytes": gz, "input_dtype": clf.input_dtype.name, **evaluate_classifier(clf, evalset)}


def export_and_measure(model, output_dir: str, quantizations, calibration: Calibration | None, evalset: EvalSet,
                       facts: dict, name: str = "model") -> list[dict]:
    """Write ``<name>_<q>.tflite`` (+ sidecars) for each quantization and measure them all on the
    same ``evalset`` (its ``reference`` is filled with the Keras model's probabilities).

    Returns one row per file, starting with the Keras model itself: format, quantization, path,
    size_bytes, gzip_bytes, accuracy, agreement (with Keras labels), max_prob_diff, latency_ms,
    input_dtype.
    """
    from tqdm.auto import tqdm

    os.makedirs(output_dir, exist_ok=True)
    keras_clf = keras_classifier(model, facts)
    evalset = replace(evalset, reference=keras_clf.predict_proba(evalset.images))
    raw, gz = keras_sizes(model, output_dir, name, facts)
    keras_row = {"format": "keras", "quantization": "float32", "path": os.path.join(output_dir, f"{name}.keras"),
                 "size_bytes": raw, "gzip_bytes": gz, "input_dtype": "float32",
                 **evaluate_classifier(keras_clf, replace(evalset, latency_runs=0))}
    keras_row["latency_ms"] = (keras_latency_ms(model, evalset.images[0], runs=evalset.latency_runs)
                               if evalset.latency_runs else None)
    rows = [keras_row]
    for q in tqdm(quantizations, desc="TFLite export", unit="file", leave=False):
        rows.append(export_measured(model, os.path.join(output_dir, f"{name}_{q}.tflite"), q, calibration,
                                    evalset, facts))
    return rows
