"""k-fold cross-validation (tfxai.training.folds, cv_report): folds by patient, out-of-fold predictions
once per image, the threshold chosen on them, per-fold shift columns, the ensemble, resuming."""
import csv
import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from data_helpers import write_kermany_like
from tfxai import data as data_lib, metrics as metrics_lib, shift
from tfxai._keras import keras
from tfxai.classifier import load_classifier
from tfxai.cli import main
from tfxai.errors import DataError, TfxaiError
from tfxai.training import TrainConfig, read_history
from tfxai.training.cv_report import summarize
from tfxai.training.folds import assign_folds, run_folds

TINY = {"width": 8, "depth": 2}


def test_folds_keep_every_patient_in_one_fold_and_stratify_classes():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, 120)  # 120 patients with 1-3 images each
    groups = np.repeat(np.arange(120), sizes)
    labels = np.repeat((np.arange(120) % 3 == 0).astype(int), sizes)  # about 1:2
    fold = assign_folds(labels, groups, 5, seed=3)
    assert set(fold.tolist()) == set(range(5))  # every image in exactly one fold
    for g in np.unique(groups):
        assert len(set(fold[groups == g].tolist())) == 1, g
    overall = labels.mean()
    for k in range(5):
        assert abs(labels[fold == k].mean() - overall) < 0.1
        assert 0.1 < (fold == k).mean() < 0.3
    np.testing.assert_array_equal(fold, assign_folds(labels, groups, 5, seed=3))
    assert not np.array_equal(fold, assign_folds(labels, groups, 5, seed=4))


def test_a_class_with_fewer_patients_than_folds_is_refused_naming_it():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    groups = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7])  # two NORMAL patients
    with pytest.raises(DataError, match="class 'NORMAL' has 2 patient"):
        assign_folds(labels, groups, 3, class_names=["NORMAL", "PNEUMONIA"])


def test_the_interval_across_folds_is_the_t_interval_of_the_mean():
    s = summarize([0.8, 0.9, 0.85, float("nan")])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.85) and s["sd"] == pytest.approx(0.05)
    assert s["ci95"] == pytest.approx([0.85 - 4.302653 * 0.05 / 3 ** 0.5, 0.85 + 4.302653 * 0.05 / 3 ** 0.5], abs=1e-5)
    assert summarize([0.99, 0.2])["ci95"] == [0.0, 1.0]  # clipped to the metric's range


@pytest.fixture(scope="module")
def kermany_like(tmp_path_factory):
    return write_kermany_like(str(tmp_path_factory.mktemp("kermany") / "chest_xray"))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_kfold_predicts_every_training_image_once_and_chooses_the_threshold_on_those_predictions(
        kermany_like, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["train", "--data-dir", kermany_like, "--model-type", "custom_cnn", "--model-options", json.dumps(TINY),
                 "--epochs", "1", "--image-size", "32", "--folds", "3", "--val-fraction", "0.2",
                 "--holdout-pattern", "NORMAL2-*", "--threshold-policy", "sensitivity", "--target-sensitivity", "0.9",
                 "--output-dir", str(out), "--no-progress", "--cache-dir", "none"]) == 0
    printed = capsys.readouterr().out
    assert "fold 2 of 3: training on" in printed and "batch-shift AUC" in printed and "95% CI" in printed
    # The training images: the protocol's split (NORMAL2-* held out, the validation split carved).
    expected = shift.load_shift_data(kermany_like, 32, 1, "pad", "NORMAL2-*", 0.2, 0, None, False).splits
    rows = _rows(out / "oof_predictions.csv")
    assert sorted(r["path"] for r in rows) == sorted(expected.train.paths)  # every image exactly once
    assert not any("NORMAL2-" in r["path"] for r in rows)
    assert not set(expected.val.paths) & {r["path"] for r in rows}
    fold_of = {}
    for r in rows:  # a patient's films are all in one fold
        assert fold_of.setdefault(data_lib.patient_id(r["path"]), r["fold"]) == r["fold"]
    cv = json.loads((out / "cv_metrics.json").read_text())
    y = np.array([r["label"] == "PNEUMONIA" for r in rows], int)
    p = np.array([float(r["p"]) for r in rows])
    assert cv["oof"]["threshold"] == pytest.approx(metrics_lib.threshold_for_sensitivity(y, p, 0.9), abs=1e-6)
    for k, fold_row in enumerate(cv["per_fold"], start=1):
        sel = np.array([r["fold"] == str(k) for r in rows])
        assert fold_row["n"] == sel.sum() and fold_row["roc_auc"] == pytest.approx(roc_auc_score(y[sel], p[sel]), abs=1e-5)
        assert 0.0 <= fold_row["shift_auc"] <= 1.0 and "synthetic_spec_worst" in fold_row
        assert json.loads((out / f"fold_{k}" / "run_config.json").read_text())["status"] == "finished"
        assert (out / f"fold_{k}" / "shift_metrics.json").exists()
    assert cv["summary"]["roc_auc"]["mean"] == pytest.approx(np.mean([r["roc_auc"] for r in cv["per_fold"]]))
    assert (out / "cv_metrics.png").stat().st_size > 0
    # The ensemble: its own threshold, on its own probabilities of the shared validation split.
    ens = load_classifier(str(out / "ensemble.keras"))
    val = shift.load_shift_data(kermany_like, 32, 1, ens.resize_mode, "NORMAL2-*", 0.2, 0, None, False).splits.val
    own = metrics_lib.threshold_for_sensitivity(val.labels, ens.predict_proba(val.images)[:, 1], 0.9)
    assert ens.threshold == pytest.approx(own, abs=1e-6)
    fold1 = load_classifier(str(out / "fold_1" / "best_model.keras")).facts
    for key in ("resize_mode", "resize_reason", "source_geometry", "val_split"):
        assert ens.facts[key] == fold1[key], key
    assert "shift" in cv["ensemble"] and ens.ood is not None


class _KillInSecondFold(keras.callbacks.Callback):
    """Interrupts the second fold's training after its first epoch (one callback object serves every fold)."""

    def __init__(self):
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.fits == 2 and epoch == 0:
            raise KeyboardInterrupt("simulated kill")


def test_a_killed_kfold_run_skips_finished_folds_and_resumes_the_unfinished_one(synthetic_dir, tmp_path):
    def config(**kw):
        settings = dict(epochs=2, image_size=32, model_options=TINY, cache_dir=None, verbose=0)
        return TrainConfig(synthetic_dir, "custom_cnn", str(tmp_path / "cv"), **{**settings, **kw})

    with pytest.raises(KeyboardInterrupt):
        run_folds(config(), 3, callbacks=[_KillInSecondFold()])
    fold1_model = tmp_path / "cv" / "fold_1" / "best_model.keras"
    before = fold1_model.stat().st_mtime_ns
    assert json.loads((tmp_path / "cv" / "fold_2" / "run_config.json").read_text())["status"] == "running"
    with pytest.raises(TfxaiError, match="different settings.*image_size"):
        run_folds(config(image_size=40), 3)
    result = run_folds(config(), 3)
    assert result.skipped == [1] and result.output_dir == str(tmp_path / "cv")
    assert fold1_model.stat().st_mtime_ns == before  # the finished fold was kept, not retrained
    assert read_history(str(tmp_path / "cv" / "fold_2" / "history.csv"))["epoch"] == [0, 1]
    assert json.loads((tmp_path / "cv" / "cv_config.json").read_text())["status"] == "finished"
    assert len(_rows(tmp_path / "cv" / "oof_predictions.csv")) == result.metrics["training_images"] == 160
