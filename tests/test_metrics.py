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


def test_bootstrap_metrics_equal_scikit_learn_with_ties():
    from sklearn import metrics as skm

    from tfxai.metrics import _fast_binary

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(np.clip(0.55 * y + rng.normal(0.25, 0.25, 500), 0, 1), 2)  # rounded: many ties
    fast = _fast_binary(y, p, 0.5)
    assert fast["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert fast["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert fast["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5), abs=1e-12)


def test_confidence_intervals_contain_the_estimate_and_shrink_with_more_data():
    from tfxai.metrics import classification_metrics, confidence_intervals

    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 2, n)
        return y, np.clip(0.5 * y + rng.normal(0.25, 0.2, n), 0, 1)

    widths = []
    for n in (200, 2000):
        y, p = sample(n)
        m, ci = classification_metrics(y, p), confidence_intervals(y, p, n_boot=300)
        for key in ("accuracy", "sensitivity", "specificity", "precision", "roc_auc", "pr_auc", "f1"):
            assert ci[key][0] <= m[key] <= ci[key][1], key
        widths.append(ci["roc_auc"][1] - ci["roc_auc"][0])
    assert widths[1] < 0.6 * widths[0]  # ~1/sqrt(10) narrower with 10x the images


def test_wilson_interval_of_a_proportion_matches_scipy():
    from scipy.stats import binomtest

    from tfxai.metrics import confidence_intervals

    y = np.array([0] * 191 + [1] * 10)
    p = np.array([0.1] * 184 + [0.9] * 7 + [0.9] * 10)  # specificity 184/191
    ci = confidence_intervals(y, p, n_boot=50)["specificity"]
    ref = binomtest(184, 191).proportion_ci(0.95, method="wilson")
    assert ci == pytest.approx([ref.low, ref.high], abs=1e-12)


def test_bootstrap_over_patients_is_wider_than_over_images_when_patients_repeat():
    from tfxai.metrics import confidence_intervals

    rng = np.random.default_rng(1)
    # 60 patients with 10 near-identical images each: 600 images but only 60 independent cases.
    y = np.repeat(rng.integers(0, 2, 60), 10)
    p = np.clip(np.repeat(0.4 * y[::10] + rng.normal(0.3, 0.2, 60), 10) + rng.normal(0, 0.01, 600), 0, 1)
    by_image = confidence_intervals(y, p, n_boot=400)["roc_auc"]
    by_patient = confidence_intervals(y, p, groups=np.repeat(np.arange(60), 10), n_boot=400)["roc_auc"]
    assert by_patient[1] - by_patient[0] > 1.5 * (by_image[1] - by_image[0])


@pytest.mark.parametrize("groups", [np.zeros(200, int), np.arange(200) % 6])
def test_too_few_patients_give_no_bootstrap_interval_and_a_warning(groups, caplog):
    from tfxai.metrics import confidence_intervals

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.4 * y + rng.normal(0.3, 0.2, 200), 0, 1)
    ci = confidence_intervals(y, p, groups=groups, n_boot=100)
    assert not set(ci) & {"roc_auc", "pr_auc", "f1"}  # rather than a zero-width (or six-point) interval
    assert "accuracy" in ci  # Wilson intervals need no groups
    assert f"from {len(set(groups))} patient(s)" in caplog.text


def _medmnist_npz(path, images, labels) -> None:
    """A MedMNIST-layout .npz (train/val/test images and labels) from ``images`` (N, S, S) uint8."""
    n = len(labels)
    parts = {"train": slice(0, n // 3), "val": slice(n // 3, 2 * n // 3), "test": slice(0, n)}
    np.savez(path, **{f"{k}_images": images[s] for k, s in parts.items()},
             **{f"{k}_labels": labels[s].reshape(-1, 1) for k, s in parts.items()})


def test_evaluate_on_an_npz_gives_intervals_of_non_zero_width(tmp_path, trained_run, synthetic_dir, capsys):
    """Issue 22: every entry of a .npz shares the file's stem; taken as one patient, every bootstrap
    resample was the whole set and ROC-AUC, PR-AUC and F1 had intervals of zero width."""
    import json

    from tfxai.cli import main
    from tfxai.data import load_folder_split

    test = load_folder_split(synthetic_dir, "test", 32, 1, "pad", cache_dir=None, progress=False)
    labels = test.labels.copy()
    labels[::6] = 1 - labels[::6]  # some wrong labels: the model must not be perfect on them
    npz = tmp_path / "synthmnist.npz"
    _medmnist_npz(npz, test.images[..., 0], labels)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", str(npz), "--split", "test",
                 "--output-dir", str(out), "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["patients"] == len(labels)
    for key in ("roc_auc", "pr_auc", "f1"):
        low, high = report["ci95"][key]
        assert high - low > 0.01, (key, low, high)
        assert low <= report["metrics"][key] <= high, key
    assert f"bootstrap over {len(labels)} patients" in capsys.readouterr().out
