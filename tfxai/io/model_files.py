"""Model files: ``.keras`` files that carry the facts needed to decide, and the run configuration beside them.

The facts (class names, threshold, preprocessing, image size, temperature ...) are stored inside
the ``.keras`` zip as ``tfxai.json`` (``MODEL_FACTS_NAME``), so a model copied without its
``run_config.json`` still decides the same way; other entries (the OOD guard, the model card) are
stored the same way. Models load with ``safe_mode=True``: a file carrying Python code is refused.
"""
from __future__ import annotations

import json
import os
import platform
import zipfile

from .. import __version__
from ..errors import ModelFileError
from .atomic import dumps_json, read_json, write_atomic

RUN_CONFIG_NAME = "run_config.json"
BEST_MODEL_NAME = "best_model.keras"
MODEL_FACTS_NAME = "tfxai.json"  # entry inside a .keras zip


def save_model(model, path: str, facts: dict | None = None) -> str:
    """Save a Keras model atomically (``.keras``), with ``facts`` (class names, threshold, image
    size, preprocessing, temperature ...) stored inside the file as ``tfxai.json``."""
    if not path.endswith(".keras"):
        raise ValueError(f"model path must end in .keras, got {path!r}")

    def writer(tmp):
        model.save(tmp)
        if facts is not None:
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(MODEL_FACTS_NAME, dumps_json(facts))
    return write_atomic(path, writer)


def set_model_entry(path: str, name: str, data: bytes) -> None:
    """Add or replace the extra entry ``name`` (tfxai's facts, the OOD guard) inside the ``.keras``
    zip at ``path``, atomically; Keras ignores entries it does not know."""
    def writer(tmp):
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if item.filename != name:
                    dst.writestr(item, src.read(item.filename))
            dst.writestr(name, data)
    write_atomic(path, writer)


def read_model_entry(path: str, name: str) -> bytes | None:
    """The bytes of the extra entry ``name`` inside a ``.keras`` zip, or None when absent."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(name) if name in z.namelist() else None
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelFileError(f"{path!r} is not a readable Keras model file: {err}") from err


def update_model_facts(path: str, facts: dict) -> None:
    """Replace the facts stored inside the ``.keras`` file at ``path`` (atomically)."""
    set_model_entry(path, MODEL_FACTS_NAME, dumps_json(facts).encode())


def read_model_json(path: str, name: str, what: str) -> dict | None:
    """The JSON object stored as entry ``name`` inside a ``.keras`` file, or None when absent;
    :class:`ModelFileError` naming ``what`` when it is not a JSON object."""
    data = read_model_entry(path, name)
    if data is None:
        return None
    try:
        out = json.loads(data)
    except ValueError as err:
        raise ModelFileError(f"{path!r}: the {what} stored in the model are not valid JSON: {err}") from err
    if not isinstance(out, dict):
        raise ModelFileError(f"{path!r}: the {what} stored in the model are not a JSON object")
    return out


def read_model_facts(path: str) -> dict | None:
    """The facts stored inside a ``.keras`` file, or None for a model saved without them."""
    return read_model_json(path, MODEL_FACTS_NAME, "facts")


def load_model(path: str):
    """Load a ``.keras`` model with ``safe_mode=True`` (refuses embedded Python code)."""
    from .._keras import keras
    from ..layers import SERIALIZABLE_LAYERS

    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if os.path.isdir(path) or not path.endswith(".keras"):
        raise ModelFileError(
            f"{path!r}: tfxai loads .keras model files (and .tflite through the classifier "
            f"interface); other formats such as .h5 or pickles can carry code and are refused")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True, custom_objects=SERIALIZABLE_LAYERS)
    except ValueError as err:
        if "safe_mode" in str(err) or "lambda" in str(err).lower():
            raise ModelFileError(f"{path!r} contains Python code (a Lambda layer); refusing to "
                                 f"load it: {err}") from err
        raise ModelFileError(f"{path!r} is not a readable Keras model: {err}") from err
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{path!r} is not a readable Keras model: {err}") from err


def read_run_config(model_path: str) -> dict:
    """The ``run_config.json`` beside a model file, or {} if there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), RUN_CONFIG_NAME)
    if not os.path.exists(path):
        return {}
    return read_json(path, "run configuration")


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
