"""Test-time augmentation that keeps its promise (tfxai.tta): a threshold is only ever applied to
probabilities produced the way it was chosen; the same for temperature scaling."""
import csv
import json
import shutil

import numpy as np
import pytest

from tfxai import metrics as metrics_lib
from tfxai.classifier import Classifier, load_classifier
from tfxai.cli import main
from tfxai.errors import DataError
from tfxai.evaluation import carry_threshold, load_eval_images
from tfxai.io.model_files import read_model_facts, update_model_facts
from tfxai.tta import mean_over_views, tta_classifier

STORED = 0.999  # a threshold "chosen without TTA" that no policy would pick on TTA probabilities


@pytest.fixture(scope="module")
def model(trained_run, tmp_path_factory):
    """The tiny trained model, whose facts say its threshold was chosen for sensitivity 0.9."""
    path = str(tmp_path_factory.mktemp("tta") / "model.keras")
    shutil.copy(trained_run.model_path, path)
    facts = read_model_facts(path)
    update_model_facts(path, {**facts, "threshold": STORED,
                              "threshold_policy": {"policy": "sensitivity", "target_sensitivity": 0.9}})
    return path


@pytest.fixture(scope="module")
def val(model, synthetic_dir):
    v = load_eval_images(load_classifier(model), synthetic_dir, "val", progress=False)
    return v.images, v.labels


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_tta_never_applies_the_threshold_chosen_without_it(model, val, synthetic_dir, tmp_path, capsys):
    base = load_classifier(model)
    want = metrics_lib.threshold_for_sensitivity(val[1], mean_over_views(base.raw_proba, val[0], 4)[:, 1], 0.9)
    assert main(["evaluate", "--checkpoint", model, "--data-dir", synthetic_dir, "--tta", "4",
                 "--output-dir", str(tmp_path / "e"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["tta"] == 4 and report["metrics"]["threshold"] == pytest.approx(want, abs=1e-6) != STORED
    assert "under the same TTA" in report["threshold_source"] and "under the same TTA" in capsys.readouterr().out
    test = load_eval_images(base, synthetic_dir, "test", progress=False)
    rows = _csv(tmp_path / "e" / "predictions.csv")
    p = mean_over_views(base.raw_proba, test.images, 4)[:, 1]
    np.testing.assert_allclose([float(r["p_PNEUMONIA"]) for r in rows], p, atol=1e-4)  # scored the same way
    assert [r["predicted"] == "PNEUMONIA" for r in rows] == (p >= want).tolist()
    # Without the validation split there is no TTA threshold: refused, not the stored one.
    assert main(["evaluate", "--checkpoint", model, "--folder", f"{synthetic_dir}/test", "--tta", "4",
                 "--output-dir", str(tmp_path / "f")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_predict_tta_chooses_its_threshold_on_validation_under_the_same_tta(model, val, synthetic_dir, tmp_path,
                                                                            capsys):
    base = load_classifier(model)
    want = metrics_lib.threshold_for_sensitivity(val[1], mean_over_views(base.raw_proba, val[0], 4)[:, 1], 0.9)
    folder = f"{synthetic_dir}/test"
    assert main(["predict", "--image", folder, "--checkpoint", model, "--tta", "4", "--no-gradcam",
                 "--output", str(tmp_path / "no.csv")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["predict", "--image", folder, "--checkpoint", model, "--tta", "4", "--data-dir", synthetic_dir,
                 "--no-gradcam", "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    assert f"threshold {want:.3f}" in capsys.readouterr().out
    rows = _csv(tmp_path / "p.csv")
    assert [r["predicted"] == "PNEUMONIA" for r in rows] == [float(r["p_PNEUMONIA"]) >= want - 5e-5 for r in rows]
    assert main(["predict", "--image", folder, "--checkpoint", model, "--tta", "4", "--threshold", "0.3",
                 "--no-gradcam", "--output", str(tmp_path / "t.csv"), "--no-progress"]) == 0
    assert [r["predicted"] == "PNEUMONIA" for r in _csv(tmp_path / "t.csv")] == [
        float(r["p_PNEUMONIA"]) >= 0.3 for r in _csv(tmp_path / "t.csv")]


def test_a_stored_temperature_is_refitted_under_tta_never_reused(model, val):
    base = load_classifier(model)
    base.temperature = 2.5  # as if trained with --calibrate
    tta = tta_classifier(base, val, views=4)
    raw = mean_over_views(base.raw_proba, val[0], 4)
    assert tta.temperature == pytest.approx(metrics_lib.fit_temperature(val[1], raw), rel=1e-6)
    assert tta.temperature != pytest.approx(2.5)
    p = metrics_lib.apply_temperature(raw, tta.temperature)[:, 1]
    assert tta.threshold == pytest.approx(metrics_lib.threshold_for_sensitivity(val[1], p, 0.9), abs=1e-6)
    np.testing.assert_allclose(tta.predict_proba(val[0][:5]), metrics_lib.apply_temperature(raw[:5], tta.temperature),
                               atol=1e-5)


def test_a_model_that_does_not_record_its_threshold_policy_needs_a_target_for_tta(val):
    clf = Classifier("old.keras", ["NORMAL", "PNEUMONIA"], 32, 1, facts={})
    with pytest.raises(DataError, match="does not record how its threshold was chosen"):
        tta_classifier(clf, val, views=2)


def test_evaluate_calibrate_carries_the_stored_threshold_with_the_probabilities(trained_run, synthetic_dir,
                                                                                tmp_path):
    model = str(tmp_path / "model.keras")
    shutil.copy(trained_run.model_path, model)
    update_model_facts(model, {**read_model_facts(model), "threshold": 0.4})
    assert main(["evaluate", "--checkpoint", model, "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "a"),
                 "--no-progress"]) == 0
    assert main(["evaluate", "--checkpoint", model, "--data-dir", synthetic_dir, "--calibrate",
                 "--output-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    plain, calibrated = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert calibrated["metrics"]["threshold"] == pytest.approx(carry_threshold(0.4, calibrated["temperature"]), abs=1e-6)
    assert calibrated["metrics"]["threshold"] != pytest.approx(0.4, abs=1e-3)
    assert calibrated["metrics"]["confusion_matrix"] == plain["metrics"]["confusion_matrix"]  # the same decisions
    assert "carried through the new temperature" in calibrated["threshold_source"]
