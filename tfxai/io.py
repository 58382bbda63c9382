"""Saving and safely loading models and their run configuration; one classifier interface.

A model file from a stranger must not run code here: ``.keras`` files are loaded with Keras'
``safe_mode=True`` (no pickled or marshalled Python), and formats that can carry code (legacy
``.h5`` with Lambda layers, pickles) are refused. ``.tflite`` files are handled by
``tfxai.export`` through the same :class:`Classifier` interface.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .errors import ModelFileError

RUN_CONFIG_NAME = "run_config.json"
BEST_MODEL_NAME = "best_model.keras"


def write_atomic(path: str, writer) -> None:
    """Call ``writer(tmp_path)`` then rename onto ``path``: a crash never leaves half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj) -> None:
    def writer(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
    write_atomic(path, writer)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def save_model(model, path: str) -> None:
    """Save a Keras model atomically (``.keras`` format)."""
    if not path.endswith(".keras"):
        raise ValueError(f"model path must end in .keras, got {path!r}")
    write_atomic(path, lambda tmp: model.save(tmp))


def load_model(path: str):
    """Load a ``.keras`` model with ``safe_mode=True`` (refuses embedded Python code)."""
    from ._keras import keras

    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if os.path.isdir(path) or not path.endswith(".keras"):
        raise ModelFileError(
            f"{path!r}: tfxai loads .keras model files (and .tflite through the classifier "
            f"interface); other formats such as .h5 or pickles can carry code and are refused")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except ValueError as err:
        if "safe_mode" in str(err) or "lambda" in str(err).lower():
            raise ModelFileError(f"{path!r} contains Python code (a Lambda layer); refusing to "
                                 f"load it: {err}") from err
        raise ModelFileError(f"{path!r} is not a readable Keras model: {err}") from err
    except (OSError, KeyError, TypeError) as err:
        raise ModelFileError(f"{path!r} is not a readable Keras model: {err}") from err


def library_versions() -> dict[str, str]:
    """Versions of Python, tfxai and the libraries that decide a model's numbers (for run configs)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform(), "tfxai": __version__}
    for pkg in ("tensorflow", "tf-keras", "numpy", "scikit-learn", "opencv-python-headless",
                "tensorflow-model-optimization", "pydicom", "ai-edge-litert", "tf-keras-vis", "lime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def read_run_config(model_path: str) -> dict:
    """The ``run_config.json`` beside a model file, or {} if there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), RUN_CONFIG_NAME)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, OSError) as err:
        raise ModelFileError(f"{path!r} is not valid JSON: {err}") from err


def probabilities(raw: np.ndarray) -> np.ndarray:
    """Model outputs -> (N, K) class probabilities; a (N, 1) sigmoid becomes [1 - p, p]."""
    raw = np.asarray(raw, np.float32)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.shape[1] == 1:
        return np.concatenate([1.0 - raw, raw], axis=1)
    return raw


@dataclass
class Classifier:
    """What inference needs from a trained model, Keras or TFLite.

    ``predict_proba(images)``: images uint8 or float32 (N, S, S, C) raw pixels in [0, 255] ->
    float32 (N, K) probabilities. ``image_size``/``channels``/``resize_mode`` say how to prepare
    an image file; ``threshold`` is the positive-class (index 1) decision threshold for binary tasks.
    """

    path: str
    class_names: list[str]
    image_size: int
    channels: int
    resize_mode: str = "pad"
    threshold: float = 0.5
    config: dict = field(default_factory=dict)
    model: object = None
    kind: str = "keras"

    def predict_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        x = np.asarray(images, np.float32)
        out = [self.model(x[i:i + batch_size], training=False).numpy()
               for i in range(0, len(x), batch_size)]
        return probabilities(np.concatenate(out) if out else np.zeros((0, len(self.class_names))))

    def decide(self, proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Predicted class indices: binary uses ``threshold`` (default the model's) on class 1, else argmax."""
        if proba.shape[1] == 2:
            return (proba[:, 1] >= (self.threshold if threshold is None else threshold)).astype(np.int64)
        return proba.argmax(axis=1).astype(np.int64)


def load_classifier(path: str) -> Classifier:
    """A :class:`Classifier` for a ``.keras`` or ``.tflite`` file, configured from ``run_config.json``."""
    if path.endswith(".tflite"):
        from .export import load_tflite_classifier

        return load_tflite_classifier(path)
    model = load_model(path)
    cfg = read_run_config(path)
    shape = model.input_shape
    num_out = model.output_shape[-1]
    num_classes = 2 if num_out == 1 else num_out
    names = cfg.get("class_names") or (["NORMAL", "PNEUMONIA"] if num_classes == 2
                                       else [f"class{i}" for i in range(num_classes)])
    return Classifier(path=path, class_names=list(names), image_size=int(shape[1]),
                      channels=int(shape[3]), resize_mode=cfg.get("resize_mode", "pad"),
                      threshold=float(cfg.get("threshold", 0.5)), config=cfg, model=model)
