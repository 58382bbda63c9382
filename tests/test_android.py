"""tfxai export --target android: the wrapper, embedded metadata, and the real MediaPipe client.

MediaPipe runs in its own virtualenv (.venv-mediapipe, created by `make install`); these tests
call it through tfxai.compress.mediapipe_env and fail (they do not skip) when it is missing: CI creates it.
The exported models have in-model preprocessing (the default recipe's equalisation; every option
in test_every_preprocessing_option_runs_as_int8_in_mediapipe): its ops are what MediaPipe 0.10.21's
int8 kernels could not run.
MediaPipe resizes images to the model's input itself, so every image is handed to it already at the
model's size, prepared exactly as `tfxai predict` prepares it (tfxai.data.load_image), as RGB: both
clients then see the same pixels and any difference is the runtime's.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfxai.classifier import classifier_problem, load_classifier, model_facts
from tfxai.cli import main
from tfxai.compress import android
from tfxai.compress.mediapipe_env import ENV_VAR, venv_python
from tfxai.data import load_image
from tfxai.io.model_files import read_model_facts, save_model, update_model_facts

ANDROID_PAGE = Path(__file__).resolve().parents[1] / "docs" / "android.md"  # the reference page "On Android"
IMAGE_EXT = (".png", ".jpeg", ".jpg")


def _val_files(root: str) -> list[str]:
    files = [str(p) for p in sorted(Path(root, "val").rglob("*")) if p.suffix.lower() in IMAGE_EXT]
    assert files, f"no validation images under {root}/val"
    return files


def _tfxai_predict(checkpoint: str, folder: str, tmp_path: Path) -> dict[str, dict]:
    """`tfxai predict` on a folder: {file: {"label", "p": {class: probability}}} from its CSV."""
    out = tmp_path / f"pred_{Path(checkpoint).stem}.csv"
    assert main(["predict", "--image", folder, "--checkpoint", checkpoint, "--output", str(out),
                 "--no-gradcam"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    return {r["file"]: {"label": r["predicted"],
                        "p": {k[2:]: float(v) for k, v in r.items() if k.startswith("p_")}} for r in rows}


def _prepared_rgb(files: list[str], clf) -> np.ndarray:
    """The model-size pixels `tfxai predict` feeds for each file, as uint8 RGB (N, S, S, 3)."""
    x = np.stack([load_image(f, clf.image_size, clf.channels, clf.resize_mode)[0] for f in files])
    return android.to_rgb(x)


def _check_against_predict(tflite: str, checkpoint: str, folder: str, files: list[str], tmp_path: Path,
                           tolerance: float) -> dict:
    """MediaPipe's ImageClassifier on ``tflite`` vs `tfxai predict` with ``checkpoint`` on the same
    files: top-category agreement >= 99 % and every score within ``tolerance``."""
    predicted = _tfxai_predict(checkpoint, folder, tmp_path)
    clf = load_classifier(checkpoint)
    scores = android.mediapipe_classify(tflite, _prepared_rgb(files, clf))
    names = clf.class_names
    top = [names[i] for i in scores.argmax(1)]
    # tfxai predict decides at the model's threshold; MediaPipe's top category is the 0.5 decision
    expected = [names[int(predicted[f]["p"][names[1]] >= 0.5)] if len(names) == 2 else predicted[f]["label"]
                for f in files]
    ref = np.array([[predicted[f]["p"][c] for c in names] for f in files])
    agreement = float(np.mean(np.array(top) == np.array(expected)))
    diff = float(np.max(np.abs(scores - ref)))
    assert agreement >= 0.99, f"MediaPipe top category agrees with tfxai predict on {agreement:.3f}"
    # tfxai predict's CSV rounds to 4 decimals: up to 5e-5 of the tolerance is rounding
    assert diff <= tolerance, f"largest score difference {diff:.2e} > {tolerance}"
    return {"agreement": agreement, "max_diff": diff, "n": len(files)}


# ----------------------------------------------------------------------------- without MediaPipe
def test_grey_wrapper_converts_rgb_like_opencv_and_keeps_probabilities(trained_run):
    import cv2

    from tfxai._keras import keras

    clf = load_classifier(trained_run.model_path)
    wrapped = android.android_model(clf.model)
    assert wrapped.input_shape == (1, clf.image_size, clf.image_size, 3)
    assert wrapped.output_shape == (1, 2)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, clf.image_size, clf.image_size, 3)).astype(np.uint8)
    grey_layer = keras.Model(wrapped.input, wrapped.get_layer("rgb_to_grey").output)
    ours = np.concatenate([grey_layer(rgb[i:i + 1].astype(np.float32)).numpy() for i in range(6)])[..., 0]
    opencv = np.stack([cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in rgb]).astype(np.float32)
    assert np.max(np.abs(ours - opencv)) <= 0.51  # OpenCV rounds to integers (fixed point), the model does not
    grey = rng.integers(0, 256, (6, clf.image_size, clf.image_size, 1)).astype(np.uint8)
    p = clf.predict_proba(grey)
    scores = np.concatenate([wrapped(android.to_rgb(grey)[i:i + 1].astype(np.float32)).numpy() for i in range(6)])
    np.testing.assert_allclose(scores, p, atol=1e-5)  # [1 - p, p], the grey value unchanged when R = G = B


def test_a_model_that_is_not_a_classifier_is_named_with_its_problem(tmp_path):
    from tfxai._keras import keras

    regression = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    assert "activation 'linear'" in classifier_problem(regression)
    vector = keras.Sequential([keras.Input((10,)), keras.layers.Dense(2, activation="softmax")])
    assert "square image input" in classifier_problem(vector)


# ----------------------------------------------------------------------------- the export, checked by MediaPipe
@pytest.fixture(scope="module")
def equalize_run(synthetic_dir, tmp_path_factory):
    """A tiny custom_cnn with the default recipe's in-model histogram equalisation, trained on the
    synthetic X-rays until its probabilities spread out (validation accuracy about 0.97; after 3
    epochs they all sat within 0.02 of the threshold, finer than int8's output step allows to
    compare). Its threshold stays 0.5: a threshold chosen on validation is one validation image's
    own probability, which float rounding then puts on either side."""
    from tfxai.training import TrainConfig, train

    out = str(tmp_path_factory.mktemp("runs") / "equalize")
    return train(TrainConfig(synthetic_dir, "custom_cnn", out, epochs=6, image_size=32, batch_size=16,
                             learning_rate=3e-3,
                             model_options={"width": 8, "depth": 2, "preprocessing": "equalize"},
                             cache_dir=None, verbose=0))


@pytest.fixture(scope="module")
def android_export(equalize_run, synthetic_dir, tmp_path_factory):
    """`tfxai export --target android` of the equalising synthetic run, float32 and int8."""
    out = tmp_path_factory.mktemp("android")
    assert main(["export", "--checkpoint", equalize_run.model_path, "--target", "android",
                 "--quantization", "float32,int8", "--data-dir", synthetic_dir, "--output-dir", str(out),
                 "--latency-runs", "3", "--author", "tfxai tests", "--license", "Apache-2.0",
                 "--mediapipe-check", "10", "--no-progress"]) == 0
    return out


def test_android_export_report_measures_each_file_like_the_default_target(android_export):
    with open(android_export / "export_report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["format"], r["quantization"]) for r in rows] == [
        ("keras", "float32"), ("android", "float32"), ("android", "int8")]
    fp32, int8 = rows[1], rows[2]
    assert float(fp32["max_prob_diff"]) < 1e-4 and float(fp32["agreement"]) == 1.0
    assert float(int8["agreement"]) >= 0.9 and float(int8["max_prob_diff"]) < 0.1
    assert (fp32["input_dtype"], int8["input_dtype"]) == ("float32", "uint8")
    for r in (fp32, int8):
        assert 0 < int(r["gzip_bytes"]) < int(r["size_bytes"]) and float(r["latency_ms"]) > 0
        assert float(r["mediapipe_agreement"]) == 1.0
    assert float(fp32["mediapipe_max_score_diff"]) < 1e-5
    assert float(int8["mediapipe_max_score_diff"]) < 1e-6  # same uint8 output, dequantized alike
    assert not list(android_export.glob(".tmp-*")) and not (android_export / "model_saved_model").exists()


def test_android_file_signature_is_rgb_in_one_score_per_class_out(android_export):
    from ai_edge_litert.interpreter import Interpreter

    for q, dtype in (("float32", np.float32), ("int8", np.uint8)):
        interp = Interpreter(model_path=str(android_export / f"model_android_{q}.tflite"))
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        assert list(inp["shape"]) == [1, 32, 32, 3] and inp["dtype"] == dtype
        assert list(out["shape"]) == [1, 2]
    assert (android_export / "labels.txt").read_text().splitlines() == ["NORMAL", "PNEUMONIA"]


def test_embedded_metadata_reads_back_labels_normalization_and_threshold(android_export, equalize_run):
    path = android_export / "model_android_int8.tflite"
    back = android.read_metadata(str(path))
    md = back["metadata"]
    assert md["author"] == "tfxai tests" and md["license"] == "Apache-2.0"
    assert md["version"].startswith("tfxai ") and "not a diagnosis" in md["description"]
    tensor_in = md["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert tensor_in["content"]["content_properties"]["color_space"] == "RGB"
    norm = tensor_in["process_units"][0]
    assert norm["options_type"] == "NormalizationOptions"
    assert norm["options"] == {"mean": [0.0], "std": [1.0]}
    out_files = md["subgraph_metadata"][0]["output_tensor_metadata"][0]["associated_files"]
    assert [(f["name"], f["type"]) for f in out_files] == [("labels.txt", "TENSOR_AXIS_LABELS")]
    assert back["associated_files"]["labels.txt"].splitlines() == ["NORMAL", "PNEUMONIA"]
    settings = json.loads(back["associated_files"][android.METADATA_JSON_NAME])
    assert settings["threshold"] == pytest.approx(equalize_run.threshold)
    assert settings["class_names"] == ["NORMAL", "PNEUMONIA"] and settings["image_size"] == 32
    assert settings["quantization"] == "int8" and "does not diagnose" in settings["intended_use"]
    # the packed files are a zip appended to the flatbuffer: any zip reader finds the labels
    with zipfile.ZipFile(path) as z:
        assert z.read("labels.txt").decode().splitlines() == ["NORMAL", "PNEUMONIA"]


def test_the_android_file_carries_the_model_card_and_its_resize_mode(android_export, equalize_run):
    from tfxai.model_card import read_model_card

    path = android_export / "model_android_int8.tflite"
    back = android.read_metadata(str(path))
    card = json.loads(back["associated_files"]["model_card.json"])
    trained = read_model_card(equalize_run.model_path)
    assert card["model_details"]["licence"] == "Apache-2.0"  # --license, the rest as trained
    assert card == {**trained, "model_details": {**trained["model_details"], "licence": "Apache-2.0"}}
    assert card["evaluation"]["validation"]["ci95"]["roc_auc"]
    assert read_model_card(str(path)) == card  # the packed file, read like any zip
    assert json.loads((android_export / "model_android_int8.json").read_text())["model_card"] == card
    assert json.loads((android_export / "model_card.json").read_text()) == card
    assert (android_export / "model_card.md").read_text().startswith("# Model card: ")
    description = back["metadata"]["description"]
    # trained on square files: squashed at inference, which is what MediaPipe does itself
    assert "resize mode squash: give the whole X-ray: MediaPipe's own stretch" in description
    assert "Model card (model_card.json): validation (60 images, 95 % intervals): roc_auc" in description


@pytest.fixture(scope="module")
def synthetic_images(synthetic_dir):
    """The synthetic training (calibration) and validation images, 32 px grey."""
    from tfxai.data import load_splits

    data = load_splits(synthetic_dir, 32, 1, cache_dir=None, progress=False)
    return data.train.images, data.val.images


@pytest.mark.parametrize("preprocessing", ["standardize", "equalize", "local_contrast", "equalize_local"])
def test_every_preprocessing_option_runs_as_int8_in_mediapipe(preprocessing, synthetic_images, tmp_path):
    """The preprocessing stays float32 inside the int8 file (its DIV and SQRT have no int8 kernel
    MediaPipe 0.10.21 runs), the network after it is int8; MediaPipe gives LiteRT's scores."""
    from ai_edge_litert.interpreter import Interpreter

    from tfxai.compress.tflite import Calibration
    from tfxai.models import build_model

    train_images, val_images = synthetic_images
    model = build_model("custom_cnn", (32, 32, 1), 2, width=8, depth=2, preprocessing=preprocessing)
    meta = android.AndroidMetadata(preprocessing, "test", "tfxai test", "tests", "Apache-2.0")
    path = android.export_android(model, str(tmp_path / "m_android_int8.tflite"), "int8",
                                  model_facts(["NORMAL", "PNEUMONIA"], 32, 1), meta, Calibration(train_images, 50))
    interp = Interpreter(model_path=path)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = [(op["op_name"], dtypes[op["inputs"][0]]) for op in interp._get_ops_details()]
    float_ops = {name for name, dtype in ops if dtype == "float32"}
    assert float_ops & {"DIV", "RSQRT"} and not {name for name, dtype in ops if dtype == "int8"} & {"DIV", "SQRT"}
    assert ("CONV_2D", "int8") in ops and ("FULLY_CONNECTED", "int8") in ops
    rgb = android.to_rgb(val_images[:10])
    lite = load_classifier(path).predict_proba(rgb)
    np.testing.assert_allclose(android.mediapipe_classify(path, rgb), lite, atol=1e-6)
    keras_p = model.predict(val_images[:10].astype(np.float32), verbose=0)[:, 0]
    assert np.max(np.abs(lite[:, 1] - keras_p)) < 0.02


def test_the_default_recipes_network_exports_to_an_int8_file_mediapipe_runs(synthetic_dir, tmp_path):
    """The network `tfxai train` builds by default (DEFAULT_RECIPE: its model, options and input
    size), as an int8 Android file: MediaPipe 0.10.21 runs it and gives LiteRT's scores."""
    from tfxai.compress.tflite import Calibration
    from tfxai.data import load_splits
    from tfxai.models import build_model
    from tfxai.training.recipes import DEFAULT_RECIPE, get_recipe

    settings = get_recipe(DEFAULT_RECIPE).settings
    size, options = settings["image_size"], settings["model_options"]
    data = load_splits(synthetic_dir, size, 1, cache_dir=None, progress=False)
    model = build_model(settings["model_type"], (size, size, 1), 2, **options)
    meta = android.AndroidMetadata(options["preprocessing"], "test", "tfxai test", "tests", "Apache-2.0")
    path = android.export_android(model, str(tmp_path / "default_android_int8.tflite"), "int8",
                                  model_facts(["NORMAL", "PNEUMONIA"], size, 1), meta,
                                  Calibration(data.train.images, 50))
    rgb = android.to_rgb(data.val.images[:12])
    lite = load_classifier(path).predict_proba(rgb)
    np.testing.assert_allclose(android.mediapipe_classify(path, rgb), lite, atol=1e-6)
    keras_p = model.predict(data.val.images[:12].astype(np.float32), verbose=0)[:, 0]
    assert np.max(np.abs(lite[:, 1] - keras_p)) < 0.05


@pytest.mark.parametrize("quantization, tolerance", [("float32", 1e-4), ("int8", 0.02)])
def test_mediapipe_image_classifier_matches_tfxai_predict_on_synthetic_xrays(
        android_export, equalize_run, synthetic_dir, tmp_path, quantization, tolerance):
    tflite = str(android_export / f"model_android_{quantization}.tflite")
    files = _val_files(synthetic_dir)
    # float32 against the Keras checkpoint; int8 against the same int8 file under tfxai (LiteRT),
    # its distance from Keras being the export report's agreement (previous test)
    reference = equalize_run.model_path if quantization == "float32" else tflite
    result = _check_against_predict(tflite, reference, os.path.join(synthetic_dir, "val"), files, tmp_path,
                                    tolerance)
    assert result["n"] == 60


def test_android_page_python_lines_run_in_mediapipe_and_give_tfxai_predicts_label(android_export, equalize_run,
                                                                                  synthetic_dir, tmp_path):
    import cv2

    section = ANDROID_PAGE.read_text()
    python_code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    kotlin = re.search(r"```kotlin\n(.*?)```", section, re.S).group(1)
    # the Kotlin does what the Python does, with the same file, threshold and class
    for py, kt in (('model_asset_path="model_android_int8.tflite"', 'setModelAssetPath("model_android_int8.tflite")'),
                   ("THRESHOLD = 0.5", "THRESHOLD = 0.5f"), ('scores["PNEUMONIA"] >= THRESHOLD',
                                                            'scores.getValue("PNEUMONIA") >= THRESHOLD'),
                   ('RESIZE_MODE = "pad"', 'RESIZE_MODE = "pad"'),
                   ('rgb_square(mp.Image.create_from_file("xray.png").numpy_view(), RESIZE_MODE)',
                    "toSquare(xray, RESIZE_MODE)")):
        assert py in python_code and kt in kotlin
    clf = load_classifier(equalize_run.model_path)
    image = sorted(Path(synthetic_dir, "val", "PNEUMONIA").glob("*.png"))[0]
    square = _prepared_rgb([str(image)], clf)[0]
    png = tmp_path / "xray.png"
    cv2.imwrite(str(png), square[..., 0])  # a grey file, as X-rays come: the snippet makes it RGB
    code = (python_code.replace("model_android_int8.tflite", str(android_export / "model_android_int8.tflite"))
            .replace("xray.png", str(png))
            .replace("THRESHOLD = 0.5 ", f"THRESHOLD = {clf.threshold!r} ")
            .replace('RESIZE_MODE = "pad"', f"RESIZE_MODE = {clf.resize_mode!r}"))
    done = subprocess.run([venv_python(), "-c", code], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-2000:]
    label, score = done.stdout.split()
    predicted = _tfxai_predict(str(android_export / "model_android_int8.tflite"), str(png.parent), tmp_path)
    assert label == predicted[str(png)]["label"]
    assert float(score) == pytest.approx(predicted[str(png)]["p"]["PNEUMONIA"], abs=2e-4)


@pytest.mark.parametrize("mode", ["pad", "crop", "squash"])
def test_android_page_rgb_square_letterboxes_and_crops_like_tfxai(mode):
    """The Android page's rgb_square at the image's own scale gives tfxai's resize_image pixels (odd
    margins included) for a grey image, as RGB."""
    from tfxai.data import resize_image

    text = ANDROID_PAGE.read_text()
    code = re.search(r"def rgb_square.*?return square\n", text, re.S).group(0)
    namespace = {"np": np}
    exec(code, namespace)  # noqa: S102 - the page's own function
    rng = np.random.default_rng(0)
    for h, w in ((41, 60), (60, 41), (40, 61), (50, 50)):
        grey = rng.integers(1, 256, (h, w), dtype=np.uint8)
        ours = namespace["rgb_square"](grey, mode)
        size = {"pad": max(h, w), "crop": min(h, w), "squash": None}[mode]
        if size is None:
            assert ours.shape == (h, w, 3)  # MediaPipe's own stretch does the rest
            continue
        reference = resize_image(grey[..., None], size, mode)[0]
        np.testing.assert_array_equal(ours, np.repeat(reference, 3, axis=2))


@pytest.mark.slow
@pytest.mark.realdata
def test_mediapipe_matches_tfxai_predict_on_real_xrays(shared_data, tmp_path):
    """A small CNN with the default recipe's in-model equalisation, trained briefly on 160 real
    X-rays (64 px), exported for Android; MediaPipe against `tfxai predict` on 60 other real
    validation X-rays (their original 224 px JPEGs)."""
    from tfxai.training import TrainConfig, train

    root = tmp_path / "xrays"
    source = shared_data / "chest_xray_224" / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((source / cls).glob("*.jpeg"))[::7][:110]
        for split, chunk in (("train", files[:80]), ("val", files[80:110])):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for f in chunk:
                (root / split / cls / f.name).symlink_to(f)
    run = train(TrainConfig(str(root), "custom_cnn", str(tmp_path / "run"), epochs=3, image_size=64,
                            batch_size=32, model_options={"width": 8, "depth": 3, "preprocessing": "equalize"},
                            cache_dir=None, verbose=0))
    out = tmp_path / "android"
    assert main(["export", "--checkpoint", run.model_path, "--target", "android", "--quantization",
                 "float32,int8", "--data-dir", str(root), "--output-dir", str(out), "--latency-runs", "3",
                 "--mediapipe-check", "0", "--no-progress"]) == 0
    files = _val_files(str(root))
    assert len(files) == 60
    folder = str(root / "val")
    for q, reference, tolerance in (("float32", run.model_path, 1e-4), ("int8", None, 0.02)):
        tflite = str(out / f"model_android_{q}.tflite")
        _check_against_predict(tflite, reference or tflite, folder, files, tmp_path, tolerance)


def test_rgb_three_class_model_scores_come_in_label_order(tmp_path):
    from prune_helpers import tiny_cnn, toy_images

    model = tiny_cnn(channels=3, num_classes=3)
    head = model.get_layer("predictions")
    kernel, _ = head.get_weights()
    head.set_weights([kernel, np.array([0.0, 1.0, 2.0], np.float32)])  # classes clearly apart, in order
    test, _ = toy_images(30, channels=3, num_classes=3, seed=9)
    config = model_facts(["a", "b", "c"], 32, 3)
    meta = android.AndroidMetadata("three", "three classes", "tfxai test", "tests", "Apache-2.0")
    path = android.export_android(model, str(tmp_path / "m_android_float32.tflite"), "float32", config, meta)
    keras_scores = model.predict(test.astype(np.float32), verbose=0)
    assert np.all(np.diff(keras_scores.mean(0)) > 0.1)
    scores = android.mediapipe_classify(path, test)
    np.testing.assert_allclose(scores, keras_scores, atol=1e-5)
    assert android.read_metadata(path)["associated_files"]["labels.txt"].splitlines() == ["a", "b", "c"]


# ----------------------------------------------------------------------------- bad input
def _not_a_classifier(tmp_path) -> str:
    from tfxai._keras import keras

    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    path = str(tmp_path / "ckpt" / "regression.keras")
    os.makedirs(os.path.dirname(path))
    save_model(model, path)
    return path


@pytest.mark.parametrize("target", ["default", "android"])
def test_export_of_a_model_that_is_not_a_classifier_is_one_line_and_writes_nothing(tmp_path, capsys, target):
    path = _not_a_classifier(tmp_path)
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", path, "--target", target, "--quantization", "float32",
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "regression.keras" in err[0] and "not an image classifier" in err[0]
    assert not list(tmp_path.rglob("*.tflite")) and not list(tmp_path.rglob(".tmp-*"))


def test_android_int8_without_calibration_images_is_one_line_and_writes_nothing(trained_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", trained_run.model_path, "--target", "android",
                 "--quantization", "int8", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-dir" in err[0]
    assert not list(tmp_path.rglob("*.tflite"))


def test_missing_mediapipe_venv_is_one_line_naming_it(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-venv" / "bin" / "python"))
    assert main(["export", "--checkpoint", trained_run.model_path, "--target", "android",
                 "--quantization", "float32", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-venv" in err[0] and "make install" in err[0]
    assert not list(tmp_path.rglob("*.tflite"))


def test_a_failure_while_embedding_metadata_leaves_no_tflite(trained_run, tmp_path, monkeypatch):
    from tfxai.compress.mediapipe_env import MediaPipeError

    def broken_writer(tflite_in, tflite_out, config, meta, card=None):
        with open(tflite_out, "wb") as f:
            f.write(b"half a file")
        raise MediaPipeError("writer crashed half-way")

    monkeypatch.setattr(android, "embed_metadata", broken_writer)
    clf = load_classifier(trained_run.model_path)
    config = model_facts(clf.class_names, clf.image_size, clf.channels)
    meta = android.AndroidMetadata("x", "x", "x", "x", "x")
    target = tmp_path / "m_android_float32.tflite"
    with pytest.raises(MediaPipeError, match="half-way"):
        android.export_android(clf.model, str(target), "float32", config, meta)
    assert os.listdir(tmp_path) == []


def test_the_models_threshold_reaches_the_embedded_json(trained_run, synthetic_dir, tmp_path):
    """A model whose validation-chosen threshold is not 0.5 carries it into tfxai_model.json."""
    import shutil

    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(trained_run.model_path, folder / "best_model.keras")
    update_model_facts(str(folder / "best_model.keras"),
                       {**read_model_facts(trained_run.model_path), "threshold": 0.3125})
    assert main(["export", "--checkpoint", str(folder / "best_model.keras"), "--target", "android",
                 "--quantization", "float32", "--output-dir", str(tmp_path / "out")]) == 0
    back = android.read_metadata(str(tmp_path / "out" / "model_android_float32.tflite"))
    assert json.loads(back["associated_files"][android.METADATA_JSON_NAME])["threshold"] == 0.3125
    assert "0.3125" in back["metadata"]["description"]
