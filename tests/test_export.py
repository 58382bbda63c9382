"""tfxai.compress.tflite: TFLite variants against Keras, sidecars, the classifier interface, the export CLI."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from prune_helpers import toy_images, trained_tiny_cnn
from tfxai.compress import measure, prune, tflite
from tfxai.compress.tflite import Calibration
from tfxai.cli import main
from tfxai.errors import DataError, ModelFileError
from tfxai.io.atomic import write_json
from tfxai.io.model_files import save_model
from tfxai.classifier import load_classifier, model_facts, probabilities


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN fitted on the toy task, held-out images, and its Keras probabilities."""
    from types import SimpleNamespace

    model, images, labels = trained_tiny_cnn()
    test_images, test_labels = toy_images(200, seed=7)
    keras_proba = probabilities(model.predict(test_images.astype(np.float32), verbose=0))
    return SimpleNamespace(model=model, images=images, labels=labels, test_images=test_images,
                           test_labels=test_labels, keras_proba=keras_proba)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, images = trained.model, trained.images
    folder = tmp_path_factory.mktemp("tflite")
    config = model_facts(["NORMAL", "PNEUMONIA"], 32, 1, "pad", threshold=0.4,
                         preprocessing="x / 255 inside the model")
    paths = {q: tflite.export_tflite(model, str(folder / f"m_{q}.tflite"), q, Calibration(images), config)
             for q in tflite.QUANTIZATIONS}
    return paths


def test_toy_model_is_well_trained(trained):
    assert np.mean((trained.keras_proba[:, 1] >= 0.5) == trained.test_labels) >= 0.95  # else agreement tests mean little


def test_float16_tflite_matches_keras_within_1e3(trained, exported):
    test_images, keras_proba = trained.test_images, trained.keras_proba
    proba = load_classifier(exported["float16"]).predict_proba(test_images)
    assert np.max(np.abs(proba - keras_proba)) < 1e-3


def test_float32_tflite_matches_keras_within_1e5(trained, exported):
    test_images, keras_proba = trained.test_images, trained.keras_proba
    proba = load_classifier(exported["float32"]).predict_proba(test_images)
    assert np.max(np.abs(proba - keras_proba)) < 1e-5


def test_int8_takes_uint8_pixels_unchanged_and_agrees_on_90_percent(trained, exported):
    test_images, keras_proba = trained.test_images, trained.keras_proba
    clf = load_classifier(exported["int8"])
    assert clf.input_dtype == np.uint8
    inp = clf.facts["inputs"][0]
    assert inp["dtype"] == "uint8" and clf.facts["outputs"][0]["dtype"] == "uint8"
    assert inp["quantization"] == {"scale": pytest.approx(1.0), "zero_point": 0}  # raw pixels as they are
    proba = clf.predict_proba(test_images)
    assert np.mean(proba.argmax(1) == keras_proba.argmax(1)) >= 0.9
    assert np.max(np.abs(proba - keras_proba)) < 0.1
    # uint8 and float32 pixel arrays give the same answer
    np.testing.assert_allclose(clf.predict_proba(test_images.astype(np.float32)), proba)


def test_int8_keeps_in_model_preprocessing_in_float32_and_the_network_in_int8(trained, tmp_path):
    """Equalisation then local contrast (DIV, SQRT): float32 between a DEQUANTIZE and a QUANTIZE,
    the convolutions int8; the file's probabilities stay within 0.02 of Keras."""
    from ai_edge_litert.interpreter import Interpreter

    from tfxai.models import build_model

    model = build_model("custom_cnn", (32, 32, 1), 2, width=8, depth=2, preprocessing="equalize_local")
    assert tuple(tflite.float_layers(model)) == (f"{model.name}/equalize/", f"{model.name}/local_contrast/")
    path = tflite.export_tflite(model, str(tmp_path / "m_int8.tflite"), "int8", Calibration(trained.images, 50))
    interp = Interpreter(model_path=path)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = {(op["op_name"], dtypes[op["inputs"][0]]) for op in interp._get_ops_details()}
    assert {("DIV", "float32"), ("SQRT", "float32")} <= ops and "DEQUANTIZE" in {name for name, _ in ops}
    assert ("CONV_2D", "int8") in ops and not {("DIV", "int8"), ("SQRT", "int8")} & ops
    keras_p = model.predict(trained.test_images[:20].astype(np.float32), verbose=0)[:, 0]
    lite_p = load_classifier(path, threshold=0.5, class_names=["a", "b"]).predict_proba(trained.test_images[:20])[:, 1]
    assert np.max(np.abs(lite_p - keras_p)) < 0.02


def test_int8_of_an_ensemble_of_the_default_recipes_networks_keeps_their_shared_preprocessing_float(trained, tmp_path):
    """An ensemble's members equalise and focus the same input alike; the converter computes that
    once, under the first member's name. The int8 file still keeps it float32 (the k-fold ensemble
    of the default recipe once failed here), and its probabilities stay within 0.02 of Keras."""
    from ai_edge_litert.interpreter import Interpreter

    from tfxai._keras import keras
    from tfxai.ensemble import build_ensemble
    from tfxai.models import build_model
    from tfxai.training.recipes import DEFAULT_RECIPE, get_recipe

    options = {k: v for k, v in get_recipe(DEFAULT_RECIPE).settings["model_options"].items() if k in ("preprocessing", "focus")}
    assert options["focus"] != "none"  # the default recipe's lung focus is part of what is tested
    members = []
    for seed in range(2):
        keras.utils.set_random_seed(seed)
        members.append(build_model("custom_cnn", (32, 32, 1), 2, width=8, depth=2, **options))
    model = build_ensemble(members)
    assert len(tflite.float_layers(model)) == 2 * len(tflite.float_layers(members[0])) >= 4
    path = tflite.export_tflite(model, str(tmp_path / "ensemble_int8.tflite"), "int8", Calibration(trained.images, 50))
    interp = Interpreter(model_path=path)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = {(op["op_name"], dtypes[op["inputs"][0]]) for op in interp._get_ops_details()}
    assert ("DIV", "float32") in ops and ("CONV_2D", "int8") in ops and ("DIV", "int8") not in ops
    keras_p = model.predict(trained.test_images[:20].astype(np.float32), verbose=0)[:, 0]
    lite_p = load_classifier(path, threshold=0.5, class_names=["a", "b"]).predict_proba(trained.test_images[:20])[:, 1]
    assert np.max(np.abs(lite_p - keras_p)) < 0.02


def test_sparse_int8_of_a_pruned_model_with_preprocessing_equals_the_dense_file(trained):
    from ai_edge_litert.interpreter import Interpreter

    from tfxai.models import build_model

    model = build_model("custom_cnn", (32, 32, 1), 2, width=16, depth=2, preprocessing="equalize")
    for w in model.weights:  # 80 % zeros in every kernel, as pruning leaves them
        if len(w.shape) == 4:
            v = w.numpy()
            v[np.abs(v) < np.percentile(np.abs(v), 80)] = 0
            w.assign(v)
    cal = Calibration(trained.images, 50)
    dense, sparse = (tflite.convert_tflite(model, "int8", cal, sparse=s) for s in (False, True))

    def outputs(data):
        interp = Interpreter(model_content=data)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        got = []
        for img in trained.test_images[:10]:
            interp.set_tensor(inp["index"], img[None])
            interp.invoke()
            got.append(interp.get_tensor(out["index"]).copy())
        return np.concatenate(got)

    assert len(sparse) < 0.9 * len(dense)
    np.testing.assert_array_equal(outputs(sparse), outputs(dense))


def test_quantized_files_are_smaller(exported):
    sizes = {q: os.path.getsize(p) for q, p in exported.items()}
    assert sizes["float16"] < 0.75 * sizes["float32"]
    assert sizes["dynamic"] < 0.75 * sizes["float32"]
    assert sizes["int8"] < 0.75 * sizes["float32"]


def test_int8_multiclass_softmax_agrees_with_keras(tmp_path):
    model, images, _ = trained_tiny_cnn(channels=3, num_classes=3)
    test_images, _ = toy_images(150, channels=3, num_classes=3, seed=8)
    keras_proba = model.predict(test_images.astype(np.float32), verbose=0)
    config = model_facts(["a", "b", "c"], 32, 3)
    path = tflite.export_tflite(model, str(tmp_path / "m.tflite"), "int8", Calibration(images), config)
    proba = load_classifier(path).predict_proba(test_images)
    assert proba.shape == (150, 3)
    assert np.mean(proba.argmax(1) == keras_proba.argmax(1)) >= 0.9
    assert np.allclose(proba.sum(1), 1.0, atol=0.03)


def test_load_classifier_reads_labels_and_config_beside_the_tflite(exported):
    clf = load_classifier(exported["dynamic"])
    assert clf.kind == "tflite"
    assert clf.class_names == ["NORMAL", "PNEUMONIA"]
    assert (clf.image_size, clf.channels, clf.resize_mode, clf.threshold) == (32, 1, "pad", 0.4)
    assert clf.facts["preprocessing"] == "x / 255 inside the model"
    assert clf.facts["quantization"] == "dynamic"
    folder = os.path.dirname(exported["dynamic"])
    with open(os.path.join(folder, "labels.txt")) as f:
        assert f.read().splitlines() == ["NORMAL", "PNEUMONIA"]
    proba = np.array([[0.7, 0.3], [0.55, 0.45]])
    assert clf.decide(proba).tolist() == [0, 1]  # threshold 0.4 on class 1


def test_a_tflite_without_facts_needs_a_threshold_and_labels_txt_names_the_classes(trained, tmp_path):
    path = str(tmp_path / "bare.tflite")
    tflite.export_tflite(trained.model, path, "float32")  # no facts: no sidecars
    with pytest.raises(ModelFileError, match="--threshold"):
        load_classifier(path)
    assert load_classifier(path, threshold=0.5).class_names == ["class0", "class1"]
    (tmp_path / "labels.txt").write_text("healthy\nsick\n")
    assert load_classifier(path, threshold=0.5).class_names == ["healthy", "sick"]


def test_wrong_image_shape_is_reported_with_the_shape(exported):
    clf = load_classifier(exported["float32"])
    with pytest.raises(DataError, match=r"\(5, 28, 28, 1\)"):
        clf.predict_proba(np.zeros((5, 28, 28, 1), np.uint8))


def test_missing_or_corrupt_tflite_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="nothing.tflite"):
        load_classifier(str(tmp_path / "nothing.tflite"))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="bad.tflite"):
        load_classifier(str(bad))


@pytest.mark.parametrize("text, expected", [("all", tflite.QUANTIZATIONS), ("int8", ("int8",)),
                                            ("float16, int8,int8", ("float16", "int8"))])
def test_parse_quantizations(text, expected):
    assert tflite.parse_quantizations(text) == expected


def test_unknown_quantization_names_the_value():
    with pytest.raises(ValueError, match="int4"):
        tflite.parse_quantizations("float16,int4")


def test_pruned_and_int8_together_keep_zeros_and_shrink_under_gzip(trained, exported, tmp_path):
    from prune_helpers import fit

    # 60%: this 19k-parameter model still does the task (at 80% it needs longer fine-tuning)
    pruned = prune.prune_model(trained.model, prune.one_shot_schedule(0.6))
    fit(pruned, trained.images, trained.labels, epochs=1, callbacks=prune.pruning_callbacks(),
        learning_rate=1e-3)
    stripped = prune.strip(pruned)
    dense_path = exported["int8"]
    pruned_path = tflite.export_tflite(stripped, str(tmp_path / "pruned.tflite"), "int8", Calibration(trained.images),
                                        model_facts(["NORMAL", "PNEUMONIA"], 32, 1))
    assert measure.gzip_size(pruned_path) < 0.85 * measure.gzip_size(dense_path)
    proba = load_classifier(pruned_path).predict_proba(trained.test_images)
    assert np.mean(proba.argmax(1) == trained.test_labels) >= 0.9  # still does the task


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def checkpoint(trained, tmp_path_factory):
    model = trained.model
    folder = tmp_path_factory.mktemp("ckpt")
    path = str(folder / "best_model.keras")
    save_model(model, path)
    write_json(str(folder / "run_config.json"), {"class_names": ["NORMAL", "PNEUMONIA"], "image_size": 32,
                                                 "channels": 1, "resize_mode": "pad", "threshold": 0.5})
    return path


def _toy_folder(root, n=80, seed=0):
    import cv2

    images, labels = toy_images(n, seed=seed)
    for i, (img, lab) in enumerate(zip(images, labels)):
        folder = os.path.join(root, "train", ["NORMAL", "PNEUMONIA"][lab])
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(os.path.join(folder, f"patient{i:04d}_img.png"), img)
    return str(root)


def test_export_cli_writes_each_quantization_sidecars_and_report(checkpoint, tmp_path):
    data = _toy_folder(tmp_path / "data", n=120)
    out = str(tmp_path / "out")
    assert main(["export", "--checkpoint", checkpoint, "--quantization", "float16,int8", "--data-dir", data,
                 "--output-dir", out, "--latency-runs", "3", "--no-onnx", "--no-progress"]) == 0
    for q in ("float16", "int8"):
        assert os.path.exists(os.path.join(out, f"model_{q}.tflite"))
        with open(os.path.join(out, f"model_{q}.json")) as f:
            assert json.load(f)["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert os.path.exists(os.path.join(out, "labels.txt"))
    assert os.path.exists(os.path.join(out, "model_saved_model", "saved_model.pb"))
    with open(os.path.join(out, "export_report.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["format"], r["quantization"]) for r in rows] == [
        ("keras", "float32"), ("tflite", "float16"), ("tflite", "int8"), ("saved", "float32")]
    for r in rows[:3]:  # measured against the Keras model on the same validation images
        assert float(r["accuracy"]) >= 0.9 and float(r["agreement"]) >= 0.9
        assert 0 < int(r["gzip_bytes"]) < int(r["size_bytes"])
    for r in rows[1:3]:
        assert float(r["latency_ms"]) > 0
    assert float(rows[1]["max_prob_diff"]) < 1e-3
    assert rows[2]["input_dtype"] == "uint8"
    assert load_classifier(os.path.join(out, "model_int8.tflite")).kind == "tflite"


def test_export_cli_pqat_adds_a_sparsity_preserving_int8_row(checkpoint, tmp_path):
    data = _toy_folder(tmp_path / "data", n=160)
    out = str(tmp_path / "out")
    assert main(["export", "--checkpoint", checkpoint, "--quantization", "int8", "--data-dir", data,
                 "--pqat-epochs", "3", "--batch-size", "16", "--output-dir", out, "--latency-runs", "3",
                 "--no-onnx", "--no-saved-model", "--no-progress"]) == 0
    with open(os.path.join(out, "export_report.csv")) as f:
        rows = {r["quantization"]: r for r in csv.DictReader(f) if r["format"] == "tflite"}
    assert set(rows) == {"int8", "int8_pqat"}
    assert rows["int8_pqat"]["input_dtype"] == "uint8"
    assert float(rows["int8_pqat"]["agreement"]) >= 0.9 and float(rows["int8_pqat"]["accuracy"]) >= 0.9
    assert os.path.exists(os.path.join(out, "model_int8_pqat.json"))


def test_export_cli_int8_without_data_is_a_clear_error(checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", checkpoint, "--quantization", "int8",
                 "--output-dir", str(tmp_path)]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_export_cli_unknown_quantization_is_a_clear_error(checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", checkpoint, "--quantization", "int3",
                 "--output-dir", str(tmp_path)]) == 2
    assert "int3" in capsys.readouterr().err


def test_onnx_export_matches_keras_under_onnxruntime(trained, tmp_path):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tflite.export_onnx(trained.model, str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    out = session.run(None, {"image": trained.test_images.astype(np.float32)})[0]
    assert np.max(np.abs(probabilities(out) - trained.keras_proba)) < 1e-4


def test_calibration_images_change_the_int8_calibration(tmp_path, trained_run, synthetic_dir):
    files = {}
    for n in (1, 100):
        out = tmp_path / f"c{n}"
        assert main(["export", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                     "--output-dir", str(out), "--quantization", "int8", "--calibration-images", str(n),
                     "--no-saved-model", "--no-onnx", "--latency-runs", "1", "--no-progress"]) == 0
        files[n] = (out / "model_int8.tflite").read_bytes()
    assert files[1] != files[100]
