import numpy as np
import pytest
from sklearn import metrics as skm

from tfxai import metrics


@pytest.fixture
def preds():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, 500), 0, 1)
    return y, p


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.71])
def test_binary_metrics_equal_scikit_learn(preds, threshold):
    y, p = preds
    m = metrics.classification_metrics(y, p, threshold)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert m["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_multiclass_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = metrics.classification_metrics(y, p)
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_threshold_for_sensitivity_reaches_target_and_is_the_highest(preds, target):
    y, p = preds
    t = metrics.threshold_for_sensitivity(y, p, target)
    assert metrics.classification_metrics(y, p, t)["sensitivity"] >= target
    assert metrics.classification_metrics(y, p, t + 1e-9)["sensitivity"] < target


def test_expected_calibration_error_of_a_known_case():
    # All confidences 0.8, 60 % correct -> ECE 0.2 exactly.
    y = np.array([1] * 6 + [0] * 4)
    p = np.full(10, 0.8)
    ece, table = metrics.expected_calibration_error(y, p, bins=10)
    assert ece == pytest.approx(0.2)
    assert sum(table["count"]) == 10


def test_temperature_scaling_lowers_overconfident_nll():
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=4000) < true_p).astype(int)  # labels drawn from calibrated probabilities
    overconfident = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))
    t = metrics.fit_temperature(y, overconfident)
    assert t > 1.5  # it must soften overconfident probabilities
    before = metrics.expected_calibration_error(y, overconfident)[0]
    after = metrics.expected_calibration_error(y, metrics.apply_temperature(np.stack([1 - overconfident, overconfident], 1), t))[0]
    assert after < before


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="threshold must be in"):
        metrics.classification_metrics([0, 1], [0.2, 0.8], threshold=1.5)
    with pytest.raises(ValueError, match="labels must be in"):
        metrics.classification_metrics([0, 2], [0.2, 0.8])
