"""One interface for inference, Keras or TFLite: :class:`Classifier`, and :func:`load_classifier`.

A classifier decides with facts that travel with the model: class names, decision threshold,
image size, channels, resize mode, preprocessing and temperature. tfxai keeps them inside the
model file (``.keras``: ``tfxai.json`` in the zip; ``.tflite``: the ``<name>.json`` written with it);
an older model falls back to the ``run_config.json`` beside it, with a note. A model with neither
stops with a clear message, unless the caller gives the threshold (``--threshold``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .checks import check_choice, check_number
from .data import RESIZE_MODES
from .errors import ConfigError, DataError, ModelFileError
from .io.atomic import read_json
from .io.model_files import load_model, read_model_facts, read_run_config
from .metrics import apply_temperature
from .ood import OODGuard, OODResult, guard_verdicts, read_guard, with_features

log = logging.getLogger(__name__)

LABELS_NAME = "labels.txt"


def num_classes_of(units: int) -> int:
    """Classes of a model with ``units`` outputs: one sigmoid unit means two classes."""
    return 2 if int(units) == 1 else int(units)


def default_class_names(num_classes: int) -> list[str]:
    return [f"class{i}" for i in range(num_classes)]


def probabilities(raw: np.ndarray) -> np.ndarray:
    """Model outputs -> (N, K) class probabilities; a (N, 1) sigmoid becomes [1 - p, p]."""
    raw = np.asarray(raw, np.float32)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.shape[1] == 1:
        return np.concatenate([1.0 - raw, raw], axis=1)
    return raw


def model_facts(class_names, image_size: int, channels: int, resize_mode: str = "pad",
                threshold: float = 0.5, preprocessing: str = "", temperature: float | None = None,
                **extra) -> dict:
    """The facts a model needs to decide, as stored inside model files and sidecars."""
    return {"class_names": list(class_names), "image_size": int(image_size), "channels": int(channels),
            "resize_mode": resize_mode, "threshold": float(threshold),
            "preprocessing": preprocessing or "inside the model; feed raw pixels in [0, 255]",
            "temperature": None if temperature is None else float(temperature), **extra}


def classifier_problem(model) -> str | None:
    """None when ``model`` is an image classifier tfxai can use (input (N, S, S, 1|3), output
    (N, 1) sigmoid or (N, K >= 2) softmax), else what is wrong, naming the shape or activation."""
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        return f"expected one image input and one output, got {len(inputs)} input(s) and {len(outputs)} output(s)"
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] not in (1, 3) or not shape[1] or shape[1] != shape[2]:
        return f"expected a square image input (N, S, S, 1 or 3), got {shape}"
    out = tuple(model.output_shape)
    if len(out) != 2 or not out[1]:
        return f"expected class scores of shape (N, K), got output shape {out}"
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if activation is None and type(last).__name__ == "Softmax":
        activation = "softmax"
    wanted = "sigmoid" if out[1] == 1 else "softmax"
    if activation != wanted:
        return (f"expected a {wanted} output for {out[1]} unit(s) (a classifier), got layer "
                f"{last.name!r} with activation {activation!r}")
    return None


def check_classifier(model, path: str) -> None:
    """Raise :class:`ModelFileError` naming ``path`` when ``model`` is not an image classifier."""
    problem = classifier_problem(model)
    if problem:
        raise ModelFileError(f"{path!r} is not an image classifier tfxai can use or export: {problem}")


def check_facts(facts: dict, where: str, num_classes: int | None = None) -> dict:
    """Check decision facts read from ``where`` (a model file); ConfigError naming the field, the
    value and the file."""
    try:
        names = facts.get("class_names")
        if names is not None:
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise ConfigError("class_names", f"must be a list of non-empty strings, got {names!r}")
            if num_classes is not None and len(names) != num_classes:
                raise ConfigError("class_names", f"lists {len(names)} names but the model has {num_classes} "
                                                 f"classes: {names}")
        check_number("threshold", facts.get("threshold", 0.5), 0, 1)
        check_number("temperature", facts.get("temperature"), 0, low_open=True, optional=True)
        check_choice("resize_mode", facts.get("resize_mode", "pad"), RESIZE_MODES)
    except ConfigError as err:  # the same error, saying which file holds the value
        raise ConfigError(err.field, err.message, source=where) from None
    return facts


@dataclass
class Classifier:
    """What inference needs from a trained model, Keras or TFLite.

    ``predict_proba(images)``: images uint8 or float32 (N, S, S, C) raw pixels in [0, 255] ->
    float32 (N, K) probabilities (temperature-scaled when the model has a temperature).
    ``image_size``/``channels``/``resize_mode`` say how to prepare an image file; ``threshold`` is
    the positive-class (index 1) decision threshold for binary tasks. ``facts``: everything stored
    with the model (:func:`model_facts` and what training added: model type, arguments, validation
    metrics, the OOD guard's summary ...); ``facts_source`` says where they came from ("model file",
    "run_config.json", "given", ...).
    """

    path: str
    class_names: list[str]
    image_size: int
    channels: int
    resize_mode: str = "pad"
    threshold: float = 0.5
    facts: dict = field(default_factory=dict)
    model: object = None
    kind: str = "keras"
    temperature: float | None = None
    facts_source: str = "model file"
    ood: OODGuard | None = field(default=None, repr=False)
    _forward: object = field(default=None, repr=False)
    _joint: object = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def raw_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities before temperature scaling, (N, K) float32."""
        from ._keras import compiled_call

        if self._forward is None:
            self._forward = compiled_call(self.model)
        x = np.asarray(images, np.float32)
        out = [self._forward(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        return probabilities(np.concatenate(out) if out else np.zeros((0, self.num_classes)))

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Raw probabilities -> temperature-scaled ones (unchanged without a temperature)."""
        return apply_temperature(raw, self.temperature) if self.temperature and len(raw) else raw

    def predict_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self.calibrated(self.raw_proba(images, batch_size))

    def raw_proba_and_ood(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, list[OODResult]]:
        """(:meth:`raw_proba`, :meth:`check_ood`) of the same images in one pass through the model:
        the guard reads the features that enter the last layer."""
        if self.ood is None or self.model is None:
            return self.raw_proba(images, batch_size), guard_verdicts(None, None, images)
        from ._keras import compiled_call

        if self._joint is None:
            self._joint = compiled_call(with_features(self.model))
        x = np.asarray(images, np.float32)
        feats, raw = [], []
        for i in range(0, len(x), batch_size):
            f, r = self._joint(x[i:i + batch_size])
            feats.append(f.numpy())
            raw.append(r.numpy())
        if not raw:
            return np.zeros((0, self.num_classes), np.float32), []
        return probabilities(np.concatenate(raw)), guard_verdicts(self.ood, None, images, np.concatenate(feats))

    def decide(self, proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Predicted class indices: binary uses ``threshold`` (default the model's) on class 1, else argmax."""
        if proba.shape[1] == 2:
            return (proba[:, 1] >= (self.threshold if threshold is None else threshold)).astype(np.int64)
        return proba.argmax(axis=1).astype(np.int64)

    def check_ood(self, images: np.ndarray) -> list[OODResult]:
        """The out-of-distribution guard's verdict per image (see :mod:`tfxai.ood`); NaN scores
        when the model carries no guard (blank images are flagged anyway)."""
        if self.ood is None or self.model is None:
            return guard_verdicts(None, None, images)
        return self.raw_proba_and_ood(images)[1]  # one compiled graph for features and outputs


@dataclass
class TFLiteClassifier(Classifier):
    """A ``.tflite`` file behind the :class:`Classifier` interface (LiteRT interpreter).

    uint8-quantized inputs are quantized with the file's scale/zero point, quantized outputs
    dequantized.
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

    @staticmethod
    def _quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
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

    def raw_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise DataError(f"{self.path}: expected images (N, {self.image_size}, {self.image_size}, "
                            f"{self.channels}), got shape {x.shape}")
        out = [self.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        proba = probabilities(np.concatenate(out) if out else np.zeros((0, self.num_classes)))
        if proba.shape[1] > 2 and len(proba):
            # A uint8 softmax sums to 1 only up to rounding (steps of 1/256); metrics need exactly 1.
            proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
        return proba.astype(np.float32)


def keras_classifier(model, facts: dict, path: str = "<memory>") -> Classifier:
    """An in-memory Keras model behind the Classifier interface, deciding with ``facts``."""
    return Classifier(path=path, class_names=list(facts["class_names"]),
                      image_size=int(model.input_shape[1]), channels=int(model.input_shape[3]),
                      resize_mode=facts.get("resize_mode", "pad"),
                      threshold=float(facts.get("threshold", 0.5)), facts=facts, model=model,
                      temperature=facts.get("temperature"))


def _tflite_facts(path: str) -> tuple[dict, str]:
    folder = os.path.dirname(os.path.abspath(path))
    sidecar = os.path.splitext(path)[0] + ".json"
    if os.path.exists(sidecar):
        return read_json(sidecar, "model description"), os.path.basename(sidecar)
    run_config = os.path.join(folder, "run_config.json")
    if os.path.exists(run_config):
        return read_json(run_config, "run configuration"), "run_config.json"
    labels = os.path.join(folder, LABELS_NAME)
    if os.path.exists(labels):
        with open(labels, encoding="utf-8") as f:
            return {"class_names": [line.strip() for line in f if line.strip()]}, LABELS_NAME
    return {}, ""


def _keras_facts(path: str) -> tuple[dict, str]:
    facts = read_model_facts(path)
    if facts is not None:
        return facts, "model file"
    cfg = read_run_config(path)
    if cfg:
        log.info("%s: decision facts read from the run_config.json beside it (the model file was "
                 "saved before tfxai stored them inside)", path)
        return cfg, "run_config.json"
    return {}, ""


def load_classifier(path: str, threshold: float | None = None,
                    class_names: list[str] | None = None, num_threads: int | None = None) -> Classifier:
    """A :class:`Classifier` for a ``.keras`` or ``.tflite`` file, deciding with the facts stored
    with it. ``threshold``/``class_names`` override them (``--threshold``); a model without stored
    facts needs ``threshold`` given, or :class:`ModelFileError` says what is missing."""
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if os.path.isdir(path):
        raise ModelFileError(f"{path!r} is a folder; expected a model file (best_model.keras or a .tflite)")
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_path=path, num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            raise ModelFileError(f"{path!r} is not a readable TFLite model: {err}") from err
        shape = [int(s) for s in interp.get_input_details()[0]["shape"]]
        units = int(interp.get_output_details()[0]["shape"][-1])
        model, facts_pair = None, _tflite_facts(path)
    else:
        interp = None
        model = load_model(path)
        check_classifier(model, path)
        shape = [int(s) if s else 0 for s in model.input_shape]
        units = int(model.output_shape[-1])
        facts_pair = _keras_facts(path)
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelFileError(f"{path!r}: input shape {shape} is not an image batch (N, S, S, 1|3); "
                             f"tfxai classifiers take square grey or RGB images")
    facts, source = facts_pair
    k = num_classes_of(units)
    check_facts(facts, f"{path} ({source})" if source else path, k)
    if "threshold" not in facts and threshold is None:
        raise ModelFileError(
            f"{path!r} carries no decision facts (class names, threshold) and has no "
            f"run_config.json or sidecar .json beside it: tfxai would have to guess threshold 0.5 "
            f"and class names {default_class_names(k)}. Copy the model's run_config.json beside it, "
            f"or pass --threshold (and --class-names) to decide anyway")
    names = list(class_names or facts.get("class_names") or default_class_names(k))
    if len(names) != k:
        raise ModelFileError(f"{path!r} has {k} classes but {len(names)} class names were given: {names}")
    if class_names is None and not facts.get("class_names"):
        log.warning("%s: no class names stored with the model; using %s", path, names)
    common = dict(path=path, class_names=names, image_size=shape[1], channels=shape[3],
                  resize_mode=facts.get("resize_mode", "pad"),
                  threshold=float(facts.get("threshold", 0.5) if threshold is None else threshold),
                  facts=facts, temperature=facts.get("temperature"),
                  facts_source="given" if threshold is not None else source)
    if interp is not None:
        return TFLiteClassifier(**common, model=None, num_threads=num_threads, _interpreter=interp)
    guard = read_guard(path)
    if guard is None:
        log.info("%s carries no out-of-distribution guard (trained before tfxai 0.2): images unlike the "
                 "training X-rays are not flagged", path)
    return Classifier(**common, model=model, ood=guard)
