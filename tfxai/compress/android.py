"""Android-ready TFLite: the file MediaPipe Tasks' ``ImageClassifier`` loads as it is.

``tfxai export --target android`` wraps the trained model so that its signature is what Android
image classifiers expect, converts it, embeds TFLite metadata, and measures it:

* input ``[1, S, S, 3]`` RGB pixels, float32 in [0, 255] (uint8 for int8 files); a grey model
  turns RGB into grey *inside* the file with the weights OpenCV documents for ``COLOR_RGB2GRAY``
  (0.299, 0.587, 0.114), the conversion ``tfxai predict`` applies when it decodes an RGB image
  for a grey model (OpenCV then rounds to an integer: within 0.51 grey levels; X-rays have
  R = G = B, for which both give the grey value itself);
* output ``[1, K]``: one score per class in label order; a binary sigmoid p becomes
  ``[1 - p, p]``, so MediaPipe's top category is the prediction at threshold 0.5 (an app applies
  the model's own threshold to the positive class's score: see the README);
* metadata (written by MediaPipe's metadata writer in the MediaPipe venv,
  :mod:`tfxai.mediapipe_env`): name, description with the intended use, version, author,
  licence; image input with normalization mean 0 and std 1 (the model takes raw pixels; the
  rescaling is inside); the labels as the output's associated file ``labels.txt``;
  ``tfxai_model.json`` (threshold, class names, image size, resize mode, intended use) and, for
  a model trained with one, ``model_card.json`` (:mod:`tfxai.model_card`) as model-level
  associated files; the description names the resize mode an app must apply and summarises the
  card.

The file is written under a temporary name and renamed only once it is complete and loads in
LiteRT: a failure never leaves a half-written ``.tflite`` under the final name.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, replace

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .. import __version__
from .._keras import keras, tf
from ..classifier import check_classifier, keras_classifier, load_classifier
from ..errors import ModelFileError
from ..model_card import CARD_JSON, summary as card_summary
from .measure import EvalSet, evaluate_classifier, file_sizes, keras_latency_ms, keras_sizes
from .mediapipe_env import run_helper, venv_python
from .tflite import Calibration, convert_tflite, write_sidecar

log = logging.getLogger(__name__)

# The RGB -> grey weights of cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) (ITU-R BT.601, as OpenCV
# documents them). OpenCV computes in fixed point and rounds to uint8: the in-model value differs
# from it by at most 0.51 grey levels (0.503 measured on 200,000 random pixels).
RGB_TO_GREY = (0.299, 0.587, 0.114)
METADATA_JSON_NAME = "tfxai_model.json"
INTENDED_USE = ("Research and teaching tool and decision-support aid for chest X-ray pneumonia triage; "
                "it does not diagnose. Validated only on the data named in the export report; validate "
                "prospectively at the site of use; a clinician must read every X-ray.")


def android_model(model, temperature: float | None = None):
    """Wrap ``model`` (raw pixels (N, S, S, C), C = 1 or 3) as RGB in, one score per class out.

    Input "image": float32 (1, S, S, 3) in [0, 255]. Output: float32 (1, K) class scores in label
    order (binary: [1 - p, p]). Grey models get a fixed 1x1 convolution with
    :data:`RGB_TO_GREY` in front (not trainable). With a ``temperature`` the scores are the
    temperature-scaled probabilities tfxai reports (softmax(log(p) / T)), so the stored threshold
    applies to them unchanged.
    """
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    inputs = keras.Input((size, size, 3), batch_size=1, name="image")
    x = inputs
    if channels == 1:
        grey = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_grey")
        x = grey(x)
        grey.set_weights([np.asarray(RGB_TO_GREY, np.float32).reshape(1, 1, 3, 1)])
    y = model(x)
    if int(model.output_shape[-1]) == 1:
        y = keras.layers.Concatenate(name="scores")([1.0 - y, y])
    if temperature:
        y = tf.nn.softmax(tf.math.log(tf.clip_by_value(y, 1e-7, 1.0)) / float(temperature), axis=-1)
    return keras.Model(inputs, y, name=f"{model.name}_android")


def to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 1|3) -> (N, S, S, 3) by repeating a grey channel."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"images must be (N, S, S, 1 or 3), got shape {images.shape}")
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


@dataclass(frozen=True)
class AndroidMetadata:
    """The general fields embedded in the file (TFLite ModelMetadata)."""

    name: str
    description: str
    version: str
    author: str
    license: str


def embed_metadata(tflite_in: str, tflite_out: str, config: dict, meta: AndroidMetadata,
                   card: dict | None = None) -> dict:
    """Write ``tflite_out`` = ``tflite_in`` + TFLite metadata (MediaPipe writer, in its venv).

    ``config``: the export config (class_names, threshold, image_size, ...), packed as
    ``tfxai_model.json``; ``card``: the model card, packed as ``model_card.json``. Returns the
    metadata as JSON (what MediaPipe's displayer prints).
    """
    with tempfile.TemporaryDirectory(prefix="tfxai-meta-") as tmp:
        json_path = os.path.join(tmp, METADATA_JSON_NAME)
        with open(json_path, "w") as f:
            json.dump({**config, "intended_use": INTENDED_USE}, f, indent=2, default=str)
        extra = [{"path": json_path, "description": "tfxai export settings: class names, decision threshold "
                  "for the positive class, image size, resize mode, intended use"}]
        if card is not None:
            card_path = os.path.join(tmp, CARD_JSON)
            with open(card_path, "w") as f:
                json.dump(card, f, indent=2, default=str)
            extra.append({"path": card_path, "description": "model card (sections of Mitchell et al. 2019): "
                          "intended use, training data, validation metrics with 95 % intervals, threshold, "
                          "out-of-distribution guard, limitations"})
        answer = run_helper("write-metadata", {
            "model_in": tflite_in, "model_out": tflite_out, "name": meta.name,
            "description": meta.description, "version": meta.version, "author": meta.author,
            "license": meta.license, "labels": list(config["class_names"]),
            "norm_mean": [0.0], "norm_std": [1.0], "extra_files": extra})
    return answer["metadata"]


def read_metadata(path: str) -> dict:
    """The metadata of an Android export read back by MediaPipe's displayer: ``{"metadata":
    <metadata JSON>, "associated_files": {name: text}}``."""
    if not os.path.isfile(path):
        raise ModelFileError(f"TFLite file {path!r} does not exist")
    return run_helper("read-metadata", os.path.abspath(path))


def mediapipe_classify(path: str, images_rgb: np.ndarray) -> np.ndarray:
    """Scores of MediaPipe Tasks' ``ImageClassifier`` on uint8 RGB images (N, H, W, 3): float32
    (N, K) in label order. MediaPipe resizes to the model's input itself; pass images already at
    the model's size to compare with tfxai on the same pixels."""
    images_rgb = np.asarray(images_rgb)
    if images_rgb.ndim != 4 or images_rgb.shape[3] != 3 or images_rgb.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images_rgb.dtype} {images_rgb.shape}")
    with tempfile.TemporaryDirectory(prefix="tfxai-mpimg-") as tmp:
        npy = os.path.join(tmp, "images.npy")
        np.save(npy, images_rgb)
        answer = run_helper("classify", {"model": os.path.abspath(path), "images": npy, "max_results": -1})
    results = answer["results"]
    k = 1 + max(c[0] for r in results for c in r) if results else 0
    scores = np.zeros((len(results), k), np.float32)
    for i, cats in enumerate(results):
        for index, _name, score in cats:
            scores[i, index] = score
    return scores


def _file_config(config: dict, model, quantization: str) -> dict:
    """The export config as it describes the Android file (RGB input, grey conversion inside)."""
    grey = int(model.input_shape[3]) == 1
    return {**config, "quantization": quantization, "target": "android", "channels": 3,
            "model_channels": int(model.input_shape[3]),
            "input": "RGB pixels [1, S, S, 3], " + ("uint8" if quantization == "int8" else "float32 in [0, 255]"),
            "grey_conversion": "inside the file, OpenCV COLOR_RGB2GRAY weights" if grey else "none (RGB model)"}


def export_android(model, path: str, quantization: str, config: dict, meta: AndroidMetadata,
                   calibration: Calibration | None = None) -> str:
    """Wrap (:func:`android_model`), convert, embed metadata, check it loads, rename to ``path``;
    then write ``labels.txt`` and ``<name>.json`` beside it. Returns ``path``.

    quantization: as :func:`tfxai.compress.tflite.convert_tflite`; int8 files take uint8 RGB input
    and calibrate on ``calibration`` (grey or RGB training images).
    """
    if not path.endswith(".tflite"):
        raise ValueError(f"TFLite path must end in .tflite, got {path!r}")
    check_classifier(model, config.get("source_model", "<model>"))
    venv_python()  # fail before converting when the writer's venv is missing
    card = config.get("model_card")
    config = {k: v for k, v in config.items() if k != "model_card"}  # packed as its own file
    wrapped = android_model(model, config.get("temperature"))
    rgb_calibration = replace(calibration, images=to_rgb(calibration.images)) if calibration is not None else None
    data = convert_tflite(wrapped, quantization, rgb_calibration)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, plain = tempfile.mkstemp(prefix=".tmp-plain-", suffix=".tflite", dir=folder)
    os.close(fd)
    final_tmp = plain.replace(".tmp-plain-", ".tmp-meta-")
    file_config = _file_config(config, model, quantization)
    try:
        with open(plain, "wb") as f:
            f.write(data)
        embed_metadata(plain, final_tmp, file_config, meta, card)
        try:
            Interpreter(model_path=final_tmp).allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelFileError(f"the exported file does not load in LiteRT: {err}") from err
        os.replace(final_tmp, path)
    finally:
        for tmp in (plain, final_tmp):
            if os.path.exists(tmp):
                os.remove(tmp)
    # The file's scores are already temperature-scaled: tfxai must not scale them again.
    write_sidecar(path, {**file_config, "temperature": None, "temperature_inside": config.get("temperature"),
                         **({"model_card": card} if card is not None else {})})
    log.info("wrote %s (android, %s)", path, quantization)
    return path


def export_and_measure_android(model, output_dir: str, quantizations, calibration: Calibration | None,
                               evalset: EvalSet, facts: dict, meta: AndroidMetadata, name: str = "model",
                               mediapipe_images: int = 20) -> list[dict]:
    """Write ``<name>_android_<q>.tflite`` for each quantization and measure each like
    :func:`tfxai.compress.tflite.export_and_measure` (the first row is the Keras model itself):
    size raw and gzipped, accuracy and agreement with the Keras labels on ``evalset`` (images as the
    model takes them; the Android file gets them as RGB), largest probability difference, LiteRT
    latency. With ``mediapipe_images`` > 0, MediaPipe's ``ImageClassifier`` also runs the file on
    that many of the images: ``mediapipe_agreement`` (its top category against tfxai's label at
    threshold 0.5 from the same file under LiteRT) and ``mediapipe_max_score_diff``.
    """
    from tqdm.auto import tqdm

    os.makedirs(output_dir, exist_ok=True)
    keras_clf = keras_classifier(model, facts)
    evalset = replace(evalset, reference=keras_clf.predict_proba(evalset.images))
    raw, gz = keras_sizes(model, output_dir, name, facts)
    rows = [{"format": "keras", "quantization": "float32", "path": os.path.join(output_dir, f"{name}.keras"),
             "size_bytes": raw, "gzip_bytes": gz, "input_dtype": "float32",
             **evaluate_classifier(keras_clf, replace(evalset, latency_runs=0)),
             "latency_ms": (keras_latency_ms(model, evalset.images[0], runs=evalset.latency_runs)
                            if evalset.latency_runs else None)}]
    rgb = replace(evalset, images=to_rgb(evalset.images))
    for q in tqdm(quantizations, desc="Android export", unit="file", leave=False):
        path = os.path.join(output_dir, f"{name}_android_{q}.tflite")
        export_android(model, path, q, facts, meta, calibration)
        clf = load_classifier(path)
        raw, gz = file_sizes(path)
        row = {"format": "android", "quantization": q, "path": path, "size_bytes": raw, "gzip_bytes": gz,
               "input_dtype": clf.input_dtype.name, **evaluate_classifier(clf, rgb)}
        if mediapipe_images:
            few = rgb.images[:mediapipe_images]
            mp_scores = mediapipe_classify(path, few)
            lite = clf.predict_proba(few)
            row["mediapipe_agreement"] = float(np.mean(mp_scores.argmax(1) == lite.argmax(1)))
            row["mediapipe_max_score_diff"] = float(np.max(np.abs(mp_scores - lite)))
        rows.append(row)
    return rows


# What an app does before MediaPipe's ImageClassifier, which stretches any image to the model's
# square input: nothing when the model itself was trained on stretched (squashed) images.
RESIZE_ADVICE = {
    "squash": "give the whole X-ray: MediaPipe's own stretch to the square input is this model's resize",
    "pad": "letterbox the X-ray to a square with black borders first (MediaPipe stretches images)",
    "crop": "centre-crop the X-ray to a square first (MediaPipe stretches images)",
}


def android_metadata(model, facts: dict, checkpoint: str, name: str | None = None,
                     author: str = "unspecified", license: str = "unspecified") -> AndroidMetadata:
    """The general metadata fields of an Android export: a name, a description saying what goes in
    and out, what an app does with the image first (the resize mode), the decision rule, the
    intended use and, for a model with a card (``facts["model_card"]``), its summary."""
    names = ", ".join(facts["class_names"])
    rule = (f"decision threshold {facts['threshold']:g} on the {facts['class_names'][1]} score "
            f"(tfxai_model.json)" if len(facts["class_names"]) == 2 else "the top score is the prediction")
    grey = "grey" if int(model.input_shape[3]) == 1 else "RGB"
    size, mode = facts["image_size"], facts["resize_mode"]
    card = facts.get("model_card")
    card_text = f" Model card (model_card.json): {card_summary(card)}." if card else ""
    return AndroidMetadata(
        name=name or f"tfxai {model.name} {size} px ({names})",
        description=(f"Chest X-ray classifier ({names}) exported by tfxai {__version__} from "
                     f"{os.path.basename(checkpoint)}: {model.name}, {size} px {grey} model; input RGB pixels "
                     f"0-255 at {size}x{size}, resize mode {mode}: {RESIZE_ADVICE.get(mode, mode)}; output one "
                     f"score per class; {rule}. Decision support only, not a diagnosis: a clinician must read "
                     f"every X-ray.{card_text}"),
        version=f"tfxai {__version__}", author=author, license=license)
