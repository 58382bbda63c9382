"""Ensembles as one model (tfxai.ensemble): the mean of the members' logits as one Dense layer, its
Grad-CAM, the shared validation split, and the ensemble in every command including the TFLite exports."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tfxai._keras import keras, tf
from tfxai.classifier import Classifier, load_classifier
from tfxai.cli import main
from tfxai.ensemble import build_ensemble, check_members
from tfxai.errors import ModelFileError
from tfxai.explain.gradcam import GradCAM
from tfxai.explain.types import normalize_heatmap
from tfxai.io.model_files import load_model, save_model
from tfxai.models import build_model


def _members(num_classes=2, k=3, depth=2):
    """k untrained tiny CNNs with random (non-zero) output biases, so the bias average matters."""
    out = []
    for seed in range(k):
        keras.utils.set_random_seed(seed)
        m = build_model("custom_cnn", (32, 32, 1), num_classes, width=8, depth=depth)
        kernel, bias = m.layers[-1].get_weights()
        m.layers[-1].set_weights([kernel * 3, np.random.default_rng(seed).normal(0, 1, bias.shape).astype(np.float32)])
        out.append(m)
    return out


def _images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 1)).astype(np.float32)


def _logits(model, x):
    """The pre-activation output of a member (the input of its final sigmoid/softmax)."""
    dense = model.layers[-1]
    feats = keras.Model(model.inputs, dense.input)(x).numpy().astype(np.float64)
    w, b = dense.get_weights()
    return feats @ w + b


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_ensemble_outputs_the_mean_of_its_members_logits(num_classes, tmp_path):
    members = _members(num_classes)
    ens = build_ensemble(members)
    x = _images()
    z = np.mean([_logits(m, x) for m in members], axis=0)
    want = 1 / (1 + np.exp(-z)) if num_classes == 2 else np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ens(x).numpy(), want, atol=1e-6)
    assert not np.allclose(ens(x).numpy(), members[0](x).numpy(), atol=1e-3)  # not a member in disguise
    save_model(ens, str(tmp_path / "e.keras"))  # loads with safe_mode, without any code
    np.testing.assert_allclose(load_model(str(tmp_path / "e.keras"))(x).numpy(), want, atol=1e-6)


def test_ensemble_gradcam_explains_the_averaged_score_over_every_members_maps():
    members = _members()
    ens = build_ensemble(members)
    x = _images(4)
    cam, proba, _ = GradCAM(ens).heatmaps(x, targets=1)
    assert GradCAM(ens).layer_name == "ensemble_maps"
    # By hand, member by member: the gradient of the *averaged* logit (1/K of each member's own)
    # weights each member's channels; the maps are summed before the ReLU.
    total = 0.0
    for m in members:
        body = keras.Model(m.inputs, [m.get_layer("gap").input, m.layers[-1].output])
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            maps, p = body(xt, training=False)
            z = tf.math.log(p) - tf.math.log(1 - p)
            score = tf.reduce_sum(z) / len(members) / 2  # the sigmoid unit's class-1 score is z / 2
        grads = tape.gradient(score, maps)
        total = total + tf.reduce_sum(tf.reduce_mean(grads, axis=(1, 2), keepdims=True) * maps, axis=-1, keepdims=True)
    want = normalize_heatmap(tf.image.resize(tf.nn.relu(total), (32, 32), method="bilinear")[..., 0].numpy())
    np.testing.assert_allclose(cam, want, atol=2e-3)
    one = GradCAM(members[-1]).heatmaps(x, targets=1)[0]
    assert np.abs(cam - one).max() > 0.05  # not the last member's map alone
    np.testing.assert_allclose(proba, np.c_[1 - ens(x).numpy(), ens(x).numpy()], atol=1e-5)


def test_members_that_cannot_be_one_ensemble_are_named():
    with pytest.raises(ValueError, match="feature-map grid"):
        build_ensemble([*_members(k=1), *_members(k=1, depth=3)])
    with pytest.raises(ValueError, match="at least 2"):
        build_ensemble(_members(k=1))

    def member(path, split, size=32):
        return Classifier(path, ["NORMAL", "PNEUMONIA"], size, 1, "squash",
                          facts={"val_split": split} if split else {})

    same = {"n": 60, "sha256": "a" * 64}
    check_members([member("a.keras", same), member("b.keras", dict(same))])
    with pytest.raises(ModelFileError, match="'b.keras' was validated on other images"):
        check_members([member("a.keras", same), member("b.keras", {"n": 60, "sha256": "b" * 64})])
    with pytest.raises(ModelFileError, match="'b.keras' records no validation split"):
        check_members([member("a.keras", same), member("b.keras", None)])
    with pytest.raises(ModelFileError, match="'b.keras': image_size 40 differs"):
        check_members([member("a.keras", same), member("b.keras", same, 40)])


# ----------------------------------------------------------------------------- every command
@pytest.fixture(scope="module")
def ensemble_path(trained_run, synthetic_dir, tmp_path_factory):
    """The trained tiny run and a second seed on the same validation split, as `tfxai ensemble` makes them."""
    from tfxai.training import TrainConfig, train

    root = tmp_path_factory.mktemp("ensemble")
    second = train(TrainConfig(synthetic_dir, "custom_cnn", str(root / "seed1"), epochs=3, image_size=32, seed=1,
                               split_seed=0, model_options={"width": 8, "depth": 2}, cache_dir=None, verbose=0))
    code = main(["ensemble", "--members", f"{trained_run.model_path},{second.model_path}", "--data-dir", synthetic_dir,
                 "--output-dir", str(root / "ens"), "--threshold-policy", "youden", "--no-progress"])
    assert code == 0
    return str(root / "ens" / "ensemble.keras"), [trained_run.model_path, second.model_path]


def test_tfxai_ensemble_chooses_its_threshold_on_its_own_validation_probabilities(ensemble_path, synthetic_dir):
    from tfxai.evaluation import load_eval_images
    from tfxai.metrics import threshold_youden

    path, member_paths = ensemble_path
    ens = load_classifier(path)
    members = [load_classifier(p) for p in member_paths]
    val = load_eval_images(ens, synthetic_dir, "val", progress=False)
    assert ens.threshold == pytest.approx(threshold_youden(val.labels, ens.predict_proba(val.images)[:, 1]), abs=1e-6)
    assert ens.ood is not None and ens.facts["ood"]["fitted_on_images"] == 160
    assert ens.facts["threshold_policy"]["policy"] == "youden" and len(ens.facts["ensemble"]["members"]) == 2
    for key in ("resize_mode", "resize_reason", "source_geometry", "val_split"):
        assert ens.facts[key] == members[0].facts[key], key
    z = np.mean([np.log(m.raw_proba(val.images)[:, 1]) - np.log(m.raw_proba(val.images)[:, 0]) for m in members], axis=0)
    np.testing.assert_allclose(ens.raw_proba(val.images)[:, 1], 1 / (1 + np.exp(-z)), atol=1e-5)
    assert json.loads((Path(path).parent / "ensemble_config.json").read_text())["command"] == "ensemble"
    # One model card, inside the file and beside it, saying how the ensemble's own threshold was chosen
    # (youden here, while its members' training arguments say "fixed").
    card = json.loads((Path(path).parent / "model_card.json").read_text())
    assert card["decision_threshold"]["policy"] == "youden"
    assert card["decision_threshold"]["value"] == pytest.approx(ens.threshold)
    assert card["model_details"]["parameters"] == ens.model.count_params()
    assert card["model_details"]["model_type"] == "ensemble of 2 x custom_cnn"


def test_an_ensemble_predicts_evaluates_and_explains_like_any_model(ensemble_path, synthetic_dir, tmp_path, capsys):
    path, _ = ensemble_path
    image = sorted((Path(synthetic_dir) / "test" / "PNEUMONIA").glob("*.png"))[0]
    assert main(["predict", "--image", str(image), "--checkpoint", path, "--output", str(tmp_path / "o.png")]) == 0
    assert (tmp_path / "o.png").stat().st_size > 0
    assert main(["predict", "--image", str(Path(synthetic_dir) / "test"), "--checkpoint", path,
                 "--output", str(tmp_path / "p.csv"), "--no-gradcam", "--no-progress"]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 61
    assert main(["evaluate", "--checkpoint", path, "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "e"),
                 "--no-progress"]) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["metrics"]["threshold"] == pytest.approx(load_classifier(path).threshold) and m["ood_guard"] is True
    assert main(["explain", "--checkpoint", path, "--image", str(image), "--methods", "gradcam,gradcam++",
                 "--output-dir", str(tmp_path / "x")]) == 0
    assert "gradcam++" in capsys.readouterr().out


def test_an_ensemble_is_served_like_any_model(ensemble_path, synthetic_dir):
    from serve_helpers import expected_predictions, running_engine

    path, _ = ensemble_path
    files = sorted(str(p) for p in (Path(synthetic_dir) / "test").glob("*/*.png"))[:4]
    with running_engine(path) as (clf, engine, _):
        outcomes = engine.predict([engine.prepare(Path(f).read_bytes(), os.path.basename(f)) for f in files])
        want = expected_predictions(clf, files)
        for f, outcome in zip(files, outcomes):
            label, proba = want[os.path.basename(f)]
            assert clf.class_names[outcome.decided] == label and np.allclose(outcome.proba, proba, atol=1e-5)
            assert outcome.heatmap is not None


@pytest.mark.parametrize("target,quantizations", [("default", "float32,int8"), ("android", "float32")])
def test_an_ensemble_exports_to_one_tflite_file_per_quantization(ensemble_path, synthetic_dir, tmp_path, target,
                                                                  quantizations):
    path, _ = ensemble_path
    out = tmp_path / target
    assert main(["export", "--checkpoint", path, "--quantization", quantizations, "--data-dir", synthetic_dir,
                 "--output-dir", str(out), "--target", target, "--no-saved-model", "--no-onnx", "--eval-images", "40",
                 "--latency-runs", "2", "--mediapipe-check", "5", "--no-progress"]) == 0
    rows = {r["quantization"]: r for r in json.loads((out / "export_report.json").read_text())["rows"]
            if r["format"] != "keras"}
    assert set(rows) == set(quantizations.split(","))
    # The measured images include the validation image the threshold sits on: a 1e-6 difference may flip it.
    assert rows["float32"]["max_prob_diff"] < 1e-4 and rows["float32"]["agreement"] >= 0.95
    if "int8" in rows:
        assert rows["int8"]["agreement"] >= 0.9
    if target == "android":
        assert rows["float32"]["mediapipe_agreement"] == 1.0
    tflites = sorted(p.name for p in out.glob("*.tflite"))
    assert len(tflites) == len(rows)  # the whole ensemble in one file each
    if target == "default":  # the sidecar says how the threshold was chosen, so --tta can choose it again
        sidecar = json.loads((out / "model_float32.json").read_text())
        assert sidecar["threshold_policy"]["policy"] == "youden"
        assert sidecar["threshold"] == pytest.approx(load_classifier(path).threshold)


def test_an_ensemble_exports_to_the_web_app_with_its_own_gradcam_inside(ensemble_path, synthetic_dir, tmp_path):
    from tfxai.compress.web_model import tflite_ops
    from tfxai.compress.web_runtime import find_runtime
    from tfxai.data import load_image
    from tfxai.errors import TfxaiError
    from tfxai.explain.types import normalize_heatmap

    try:
        find_runtime()
    except TfxaiError as err:  # `make install` puts LiteRT.js in web/node_modules; CI has it
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(str(err))
    from ai_edge_litert.interpreter import Interpreter

    path, _ = ensemble_path
    assert main(["export", "--checkpoint", path, "--target", "web", "--output-dir", str(tmp_path / "app")]) == 0
    model_file = str(tmp_path / "app" / "model.tflite")
    assert not [op for op in tflite_ops(model_file) if "FLEX" in op.upper() or "CUSTOM" in op.upper()]
    clf = load_classifier(path)
    x = np.stack([load_image(str(p), 32, 1, clf.resize_mode)[0] for p in
                  sorted((Path(synthetic_dir) / "test" / "NORMAL").glob("*.png"))[:3]]).astype(np.float32)
    maps = GradCAM(clf.model).heatmaps(x, targets=np.ones(len(x), np.int64))[0]
    runner = Interpreter(model_path=model_file).get_signature_runner("serving_default")
    for i in range(len(x)):
        out = runner(image=x[i][None])
        np.testing.assert_allclose(out["scores"][0], clf.predict_proba(x[i:i + 1])[0], atol=1e-5)
        np.testing.assert_allclose(normalize_heatmap(out["gradcam"][0, 1]), maps[i], atol=1e-4)
