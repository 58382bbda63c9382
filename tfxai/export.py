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

import gzip
import io as _io
import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError, ModelFileError
from .io import Classifier, probabilities, write_atomic, write_json

log = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "dynamic", "float16", "int8")
LABELS_NAME = "labels.txt"


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


# ----------------------------------------------------------------------------- sizes
def gzip_size(data: bytes | str) -> int:
    """Size in bytes after gzip -9 of ``data`` (bytes) or of the file at path ``data``."""
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            data = f.read()
    buf = _io.BytesIO()
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


def keras_sizes(model, folder: str, name: str = "model") -> tuple[int, int]:
    """Save ``model`` (without optimizer state) as ``folder/<name>.keras``; its (raw, gzip) bytes."""
    from .io import save_model
    from .prune import copy_model

    path = os.path.join(folder, f"{name}.keras")
    save_model(copy_model(model), path)
    return file_sizes(path)


# ----------------------------------------------------------------------------- conversion
def representative_sample(images: np.ndarray, count: int = 200, seed: int = 0) -> np.ndarray:
    """Up to ``count`` calibration images (uint8 (N, S, S, C)) drawn with ``seed``, plus one
    all-black and one all-white image so that int8 input quantization is exactly [0, 255]."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"representative images must be a non-empty (N, S, S, C) array, got shape {images.shape}")
    idx = np.random.default_rng(seed).permutation(len(images))[:count]
    extremes = np.stack([np.zeros(images.shape[1:], images.dtype), np.full(images.shape[1:], 255, images.dtype)])
    return np.concatenate([extremes, images[np.sort(idx)]])


def convert_tflite(model, quantization: str = "float32", representative_images: np.ndarray | None = None,
                   calibration_count: int = 200, seed: int = 0) -> bytes:
    """Convert a Keras model (raw [0, 255] float32 input) to a TFLite flatbuffer.

    quantization: "float32" (none), "dynamic" (int8 weights, float activations), "float16"
    (float16 weights), "int8" (full integer, uint8 input and output; needs
    ``representative_images`` uint8 (N, S, S, C), typically training images).
    """
    from ._keras import tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative_images is None:
            raise ValueError("int8 quantization needs representative_images (training images)")
        sample = representative_sample(representative_images, calibration_count, seed).astype(np.float32)

        def representative():
            for i in range(len(sample)):
                yield [sample[i:i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def model_config(class_names, image_size: int, channels: int, resize_mode: str = "pad",
                 threshold: float = 0.5, normalization: str = "", **extra) -> dict:
    """The keys a deployed model travels with (same as ``run_config.json``)."""
    return {"class_names": list(class_names), "image_size": int(image_size), "channels": int(channels),
            "resize_mode": resize_mode, "threshold": float(threshold),
            "normalization": normalization or "none outside the model (raw pixels in [0, 255])",
            **extra}


def _tensor_info(detail: dict) -> dict:
    scale, zero = detail.get("quantization", (0.0, 0))
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(s) for s in detail["shape_signature"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero)}}


def write_sidecar(tflite_path: str, config: dict) -> str:
    """Write ``labels.txt`` and ``<name>.json`` beside ``tflite_path``; returns the JSON path.

    The JSON is ``config`` plus the file's input/output tensor names, dtypes, shapes and
    quantization, read from the flatbuffer itself."""
    from ai_edge_litert.interpreter import Interpreter

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

    def write_labels(tmp):
        with open(tmp, "w") as f:
            f.write("".join(f"{name}\n" for name in config["class_names"]))

    write_atomic(os.path.join(folder, LABELS_NAME), write_labels)
    json_path = os.path.splitext(tflite_path)[0] + ".json"
    write_json(json_path, meta)
    return json_path


def export_tflite(model, path: str, quantization: str = "float32",
                  representative_images: np.ndarray | None = None, config: dict | None = None,
                  calibration_count: int = 200, seed: int = 0) -> str:
    """Convert (see :func:`convert_tflite`), write ``path`` atomically and, with ``config``
    (see :func:`model_config`), its ``labels.txt`` and ``.json`` sidecars. Returns ``path``."""
    if not path.endswith(".tflite"):
        raise ValueError(f"TFLite path must end in .tflite, got {path!r}")
    data = convert_tflite(model, quantization, representative_images, calibration_count, seed)

    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomic(path, writer)
    if config is not None:
        write_sidecar(path, {**config, "quantization": quantization})
    log.info("wrote %s (%s, %d bytes)", path, quantization, len(data))
    return path


def export_saved_model(model, folder: str) -> str:
    """A TensorFlow SavedModel (serving signature ``serving_default``) in ``folder``."""
    from ._keras import tf

    tf.saved_model.save(model, folder)
    return folder


def export_onnx(model, path: str) -> str | None:
    """ONNX through tf2onnx when it is importable; None (logged) when it is not installed."""
    try:
        import tf2onnx
    except ImportError:
        log.info("tf2onnx is not installed; skipping ONNX export")
        return None
    from ._keras import tf

    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=path)
    return path


# ----------------------------------------------------------------------------- inference
@dataclass
class TFLiteClassifier(Classifier):
    """A ``.tflite`` file behind the :class:`tfxai.io.Classifier` interface (LiteRT interpreter).

    ``predict_proba(images)``: uint8 or float32 raw pixels (N, S, S, C) in [0, 255] -> float32
    (N, K) probabilities; uint8-quantized inputs are quantized with the file's scale/zero point,
    quantized outputs dequantized.
    """

    kind: str = "tflite"
    num_threads: int | None = None
    _interpreter: object = field(default=None, repr=False)
    _batch: int = field(default=-1, repr=False)

    def _ensure(self, batch: int):
        from ai_edge_litert.interpreter import Interpreter

        if self._interpreter is None:
            self._interpreter = Interpreter(model_path=self.path, num_threads=self.num_threads)
            self._batch = -1
        if batch != self._batch:
            detail = self._interpreter.get_input_details()[0]
            self._interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            self._interpreter.allocate_tensors()
            self._batch = batch
        return self._interpreter

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._ensure(max(self._batch, 1)).get_input_details()[0]["dtype"])

    def _quantize_input(self, x: np.ndarray, detail: dict) -> np.ndarray:
        dtype = np.dtype(detail["dtype"])
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float32) / (scale or 1.0) + zero)
        return np.clip(q, info.min, info.max).astype(dtype)

    def run(self, images: np.ndarray) -> np.ndarray:
        """One interpreter call on a batch; returns the dequantized raw output (N, units)."""
        x = np.asarray(images)
        interp = self._ensure(len(x))
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]
        interp.set_tensor(inp["index"], self._quantize_input(x, inp))
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if np.dtype(out["dtype"]) != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def predict_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise DataError(f"{self.path}: expected images (N, {self.image_size}, {self.image_size}, "
                            f"{self.channels}), got shape {x.shape}")
        out = [self.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        proba = probabilities(np.concatenate(out) if out else np.zeros((0, len(self.class_names))))
        if proba.shape[1] > 2 and len(proba):
            # A uint8 softmax sums to 1 only up to rounding (steps of 1/256); metrics need exactly 1.
            proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
        return proba.astype(np.float32)


def load_tflite_classifier(path: str, num_threads: int | None = None) -> TFLiteClassifier:
    """A :class:`TFLiteClassifier` for ``path``, configured from ``<name>.json`` beside it (written
    by :func:`export_tflite`), else ``run_config.json`` and ``labels.txt`` in the same folder,
    else from the file's input shape with generic class names."""
    from ai_edge_litert.interpreter import Interpreter

    if not os.path.isfile(path):
        raise ModelFileError(f"TFLite file {path!r} does not exist")
    try:
        interp = Interpreter(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path!r} is not a readable TFLite model: {err}") from err
    detail = interp.get_input_details()[0]
    shape = [int(s) for s in detail["shape"]]
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelFileError(f"{path!r}: input shape {shape} is not an image (N, S, S, 1|3)")
    folder = os.path.dirname(os.path.abspath(path))
    cfg = {}
    for candidate in (os.path.splitext(path)[0] + ".json", os.path.join(folder, "run_config.json")):
        if os.path.exists(candidate):
            try:
                with open(candidate) as f:
                    cfg = json.load(f)
            except (ValueError, OSError) as err:
                raise ModelFileError(f"{candidate!r} is not valid JSON: {err}") from err
            break
    names = cfg.get("class_names")
    labels_path = os.path.join(folder, LABELS_NAME)
    if not names and os.path.exists(labels_path):
        with open(labels_path) as f:
            names = [line.strip() for line in f if line.strip()]
    units = int(interp.get_output_details()[0]["shape"][-1])
    k = 2 if units == 1 else units
    if not names:
        names = [f"class{i}" for i in range(k)]
    if len(names) != k:
        raise ModelFileError(f"{path!r} has {k} outputs classes but its labels name {len(names)}: {names}")
    return TFLiteClassifier(path=path, class_names=list(names), image_size=shape[1], channels=shape[3],
                            resize_mode=cfg.get("resize_mode", "pad"),
                            threshold=float(cfg.get("threshold", 0.5)), config=cfg, model=None,
                            num_threads=num_threads, _interpreter=interp, _batch=-1)


# ----------------------------------------------------------------------------- measuring
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
    from ._keras import tf

    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    x = tf.constant(np.asarray(image, np.float32)[None])
    return median_latency_ms(lambda v: fn(v).numpy(), x, runs, warmup)


def evaluate_classifier(clf: Classifier, images: np.ndarray, labels: np.ndarray,
                        reference_proba: np.ndarray | None = None, latency_runs: int = 50) -> dict:
    """Accuracy on (images uint8 (N, S, S, C), labels (N,)); with ``reference_proba`` (N, K) of the
    Keras model: label agreement and the largest absolute probability difference; median latency
    (ms) of a single image over ``latency_runs`` runs after warm-up."""
    from .metrics import classification_metrics

    proba = clf.predict_proba(images)
    out = {"accuracy": float(classification_metrics(labels, proba, clf.threshold)["accuracy"]),
           "n": int(len(labels))}
    if reference_proba is not None:
        out["agreement"] = float(np.mean(clf.decide(proba) == clf.decide(reference_proba)))
        out["max_prob_diff"] = float(np.max(np.abs(proba - reference_proba)))
    if latency_runs:
        one = np.asarray(images[:1])
        runner = clf.run if isinstance(clf, TFLiteClassifier) else clf.predict_proba
        out["latency_ms"] = median_latency_ms(runner, one, runs=latency_runs)
    return out


def keras_classifier(model, config: dict, path: str = "<memory>") -> Classifier:
    """An in-memory Keras model behind the Classifier interface."""
    return Classifier(path=path, class_names=list(config["class_names"]),
                      image_size=int(model.input_shape[1]), channels=int(model.input_shape[3]),
                      resize_mode=config.get("resize_mode", "pad"),
                      threshold=float(config.get("threshold", 0.5)), config=config, model=model)


def export_and_measure(model, output_dir: str, quantizations=QUANTIZATIONS, *,
                       representative_images: np.ndarray | None, eval_images: np.ndarray,
                       eval_labels: np.ndarray, config: dict, name: str = "model",
                       latency_runs: int = 50, seed: int = 0) -> list[dict]:
    """Write ``<name>_<q>.tflite`` (+ sidecars) for each quantization and measure them all.

    Returns one row per file, starting with the Keras model itself: format, quantization, path,
    size_bytes, gzip_bytes, accuracy, agreement (with Keras labels), max_prob_diff, latency_ms,
    input_dtype. Accuracy and agreement use the same ``eval_images``.
    """
    from tqdm.auto import tqdm

    os.makedirs(output_dir, exist_ok=True)
    keras_clf = keras_classifier(model, config)
    reference = keras_clf.predict_proba(eval_images)
    raw, gz = keras_sizes(model, output_dir, name)
    keras_row = {"format": "keras", "quantization": "float32", "path": os.path.join(output_dir, f"{name}.keras"),
                 "size_bytes": raw, "gzip_bytes": gz, "input_dtype": "float32",
                 **evaluate_classifier(keras_clf, eval_images, eval_labels, reference, 0)}
    keras_row["latency_ms"] = keras_latency_ms(model, eval_images[0], runs=latency_runs) if latency_runs else None
    rows = [keras_row]
    for q in tqdm(quantizations, desc="TFLite export", unit="file", leave=False):
        rows.append(export_measured(model, os.path.join(output_dir, f"{name}_{q}.tflite"), q,
                                    representative_images=representative_images, eval_images=eval_images,
                                    eval_labels=eval_labels, reference_proba=reference, config=config,
                                    latency_runs=latency_runs, seed=seed))
    return rows


def export_measured(model, path: str, quantization: str, *, representative_images: np.ndarray | None,
                    eval_images: np.ndarray, eval_labels: np.ndarray, reference_proba: np.ndarray,
                    config: dict, latency_runs: int = 50, seed: int = 0, label: str | None = None) -> dict:
    """Write one ``.tflite`` (+ sidecars) and measure it against ``reference_proba`` (the Keras
    model's probabilities on ``eval_images``): one row of :func:`export_and_measure`. ``label``
    names the row's quantization when it differs from ``quantization`` (e.g. "int8_pqat")."""
    export_tflite(model, path, quantization, representative_images, config, seed=seed)
    clf = load_tflite_classifier(path)
    raw, gz = file_sizes(path)
    return {"format": "tflite", "quantization": label or quantization, "path": path, "size_bytes": raw,
            "gzip_bytes": gz, "input_dtype": clf.input_dtype.name,
            **evaluate_classifier(clf, eval_images, eval_labels, reference_proba, latency_runs)}


def format_table(rows: list[dict]) -> str:
    """The export measurements as a fixed-width console table."""
    head = (f"{'format':7s} {'quant':8s} {'size KB':>9s} {'gzip KB':>9s} {'acc':>6s} {'agree':>6s} "
            f"{'max|dp|':>8s} {'ms/img':>7s} {'input':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        def num(key, fmt):
            v = r.get(key)
            return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(len(format(0.0, fmt)))
        lines.append(f"{r['format']:7s} {r['quantization']:8s} {r['size_bytes'] / 1024:9.1f} "
                     f"{r['gzip_bytes'] / 1024:9.1f} {num('accuracy', '6.3f')} {num('agreement', '6.3f')} "
                     f"{num('max_prob_diff', '8.4f')} {num('latency_ms', '7.2f')} {r['input_dtype']:>7s}")
    return "\n".join(lines)
