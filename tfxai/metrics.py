"""Clinical metrics, decision thresholds and calibration, from labels and predicted probabilities.

Threshold metrics come from the confusion matrix computed here; ROC-AUC and PR-AUC from
scikit-learn. ``tests/test_metrics.py`` checks every number against scikit-learn's own functions.
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)


def _check(y_true, proba):
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(proba, np.float64)
    if p.ndim == 1:
        p = np.stack([1 - p, p], axis=1)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"proba must be (N, K) with N = {len(y)} labels, got shape {p.shape}")
    if len(y) == 0:
        raise ValueError("no predictions to score")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in [0, {p.shape[1] - 1}], got range [{y.min()}, {y.max()}]")
    return y, p


def confusion(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class (scikit-learn's convention)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def classification_metrics(y_true, proba, threshold: float = 0.5, positive: int = 1) -> dict:
    """Metrics for predicted probabilities ``proba`` (N, K), or (N,) for the positive class.

    Binary: the positive class (index 1, e.g. PNEUMONIA) is predicted when p >= threshold; returns
    accuracy, precision, sensitivity (= recall), specificity, f1, roc_auc, pr_auc (average
    precision), confusion_matrix, threshold, n. More classes: argmax, macro averages, one-vs-rest AUC.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, p = _check(y_true, proba)
    k = p.shape[1]
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if k == 2:
        pred = (p[:, positive] >= threshold).astype(np.int64)
        cm = confusion(y, pred, 2)
        tn, fp, fn, tp = cm.ravel()
        precision, sensitivity = _div(tp, tp + fp), _div(tp, tp + fn)
        both = len(np.unique(y)) == 2
        out = {
            "n": int(len(y)), "threshold": float(threshold),
            "accuracy": _div(tp + tn, len(y)),
            "precision": precision, "sensitivity": sensitivity, "recall": sensitivity,
            "specificity": _div(tn, tn + fp),
            "f1": _div(2 * precision * sensitivity, precision + sensitivity),
            "roc_auc": float(roc_auc_score(y, p[:, positive])) if both else float("nan"),
            "pr_auc": float(average_precision_score(y, p[:, positive])) if both else float("nan"),
            "confusion_matrix": cm.tolist(),
        }
        return out
    pred = p.argmax(axis=1)
    cm = confusion(y, pred, k)
    tp = np.diag(cm).astype(float)
    prec = np.array([_div(tp[i], cm[:, i].sum()) for i in range(k)])
    rec = np.array([_div(tp[i], cm[i].sum()) for i in range(k)])
    f1 = np.array([_div(2 * a * b, a + b) for a, b in zip(prec, rec)])
    present = len(np.unique(y)) == k
    return {
        "n": int(len(y)), "accuracy": _div(tp.sum(), len(y)),
        "precision": float(prec.mean()), "sensitivity": float(rec.mean()), "recall": float(rec.mean()),
        "f1": float(f1.mean()),
        "roc_auc": float(roc_auc_score(y, p, multi_class="ovr")) if present else float("nan"),
        "confusion_matrix": cm.tolist(),
    }


# Proportions (numerator, denominator) from the binary confusion matrix [[tn, fp], [fn, tp]].
_PROPORTIONS = {"accuracy": lambda tn, fp, fn, tp: (tp + tn, tn + fp + fn + tp),
                "sensitivity": lambda tn, fp, fn, tp: (tp, tp + fn),
                "recall": lambda tn, fp, fn, tp: (tp, tp + fn),
                "specificity": lambda tn, fp, fn, tp: (tn, tn + fp),
                "precision": lambda tn, fp, fn, tp: (tp, tp + fp)}
_BOOTSTRAPPED = ("roc_auc", "pr_auc", "f1")
# Fewer groups (patients) than this, or fewer than 2 holding each class, and a percentile
# bootstrap has too few distinct resamples to mean anything (one group: every resample is the
# whole set and the interval has zero width): the bootstrapped intervals are then left out.
MIN_BOOTSTRAP_GROUPS = 10


def confidence_intervals(y_true, proba, threshold: float = 0.5, groups=None, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, list[float]]:
    """95 % confidence intervals of the binary metrics: {metric: [low, high]}.

    Proportions (accuracy, sensitivity, specificity, precision) get Wilson score intervals
    (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``); ROC-AUC, PR-AUC and F1 a
    percentile bootstrap over ``groups`` (patient ids: images of one patient are resampled
    together, since they are not independent) or over images when no groups are given. With
    fewer than MIN_BOOTSTRAP_GROUPS groups, or fewer than 2 groups holding each class, those
    three are left out, with a warning. Multi-class inputs get only the accuracy interval.
    """
    from scipy.stats import binomtest

    y, p = _check(y_true, proba)
    if p.shape[1] != 2:
        correct = int((p.argmax(axis=1) == y).sum())
        return {"accuracy": list(binomtest(correct, len(y)).proportion_ci(0.95, method="wilson"))}
    tn, fp, fn, tp = confusion(y, (p[:, 1] >= threshold).astype(np.int64), 2).ravel()
    out = {}
    for name, counts in _PROPORTIONS.items():
        k, n = (int(v) for v in counts(tn, fp, fn, tp))
        if n:
            ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
            out[name] = [float(ci.low), float(ci.high)]
    out.update(_grouped_bootstrap(y, p, threshold, groups, n_boot, seed))
    return out


def _fast_binary(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC (Mann-Whitney, ties averaged), average precision and F1 with plain numpy: the same
    numbers as scikit-learn's (tested), fast enough for a thousand bootstrap resamples."""
    from scipy.stats import rankdata

    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    auc = (rankdata(score)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    order = np.argsort(-score, kind="mergesort")
    ys, ss = y[order], score[order]
    # Average precision over distinct thresholds (scikit-learn's step-wise definition).
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall_steps = np.diff(np.r_[0, tps]) / n1
    ap = float(np.sum(recall_steps * precision))
    pred = score >= threshold
    tp = int((pred & pos).sum())
    f1 = _div(2 * tp, pred.sum() + n1)
    return {"roc_auc": float(auc), "pr_auc": ap, "f1": f1}


def _grouped_bootstrap(y, p, threshold, groups, n_boot: int, seed: int) -> dict[str, list[float]]:
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    if len(groups) != len(y):
        raise ValueError(f"groups must have one id per prediction ({len(y)}), got {len(groups)}")
    _, inverse = np.unique(groups, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    per_class = [len(np.unique(inverse[y == c])) for c in (0, 1)]
    if n_groups < MIN_BOOTSTRAP_GROUPS or min(per_class) < 2:
        log.warning("no bootstrap intervals for ROC-AUC, PR-AUC and F1: the %d images come from %d patient(s) "
                    "(%d with class 0, %d with class 1); a bootstrap over patients needs at least %d, and 2 "
                    "of each class", len(y), n_groups, per_class[0], per_class[1], MIN_BOOTSTRAP_GROUPS)
        return {}
    order = np.argsort(inverse, kind="mergesort")
    starts = np.r_[0, np.cumsum(np.bincount(inverse))]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {k: [] for k in _BOOTSTRAPPED}
    for _ in range(n_boot):
        picked = rng.integers(0, len(starts) - 1, len(starts) - 1)
        idx = order[np.concatenate([np.arange(starts[g], starts[g + 1]) for g in picked])]
        if len(np.unique(y[idx])) < 2:
            continue
        for k, v in _fast_binary(y[idx], p[idx, 1], threshold).items():
            values[k].append(v)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in values.items() if v}


def format_with_ci(m: dict, ci: dict, prefix: str = "") -> str:
    """``accuracy 0.953 [0.931, 0.969]  sensitivity ...``: each metric with its 95 % interval."""
    parts = []
    for k in METRIC_KEYS:
        if k in m and m[k] == m[k]:
            lo_hi = ci.get(k)
            parts.append(f"{k} {m[k]:.3f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else ""))
    return prefix + "  ".join(parts)


def threshold_for_sensitivity(y_true, p_pos, target: float) -> float:
    """The highest threshold whose sensitivity on (y_true, p_pos) is at least ``target``."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target!r}")
    y = np.asarray(y_true).reshape(-1)
    pos = np.sort(np.asarray(p_pos, np.float64)[y == 1])[::-1]
    if len(pos) == 0:
        raise ValueError("no positive examples to set a sensitivity threshold on")
    k = int(math.ceil(target * len(pos)))  # need at least k positives at or above the threshold
    return float(pos[k - 1])


def roc_auc_or_nan(y_true, p_pos) -> float:
    """ROC-AUC of P(class 1) ``p_pos``; NaN when ``y_true`` does not hold both classes."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true)
    return float(roc_auc_score(y, p_pos)) if len(np.unique(y)) == 2 else float("nan")


def specificity_at_sensitivity(y_true, p_pos, target: float) -> float:
    """Best specificity among thresholds reaching sensitivity >= ``target`` on (y_true, p_pos)
    itself (an optimistic operating point: the threshold is picked on the scored images)."""
    y = np.asarray(y_true).reshape(-1)
    t = threshold_for_sensitivity(y, p_pos, target)
    return float((np.asarray(p_pos)[y == 0] < t).mean())


def threshold_youden(y_true, p_pos) -> float:
    """Threshold maximising sensitivity + specificity - 1 (Youden's J) on the ROC curve."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y_true).reshape(-1), p_pos)
    best = int(np.argmax(tpr - fpr))
    return float(min(1.0, thr[best]))


THRESHOLD_POLICIES = ("fixed", "sensitivity", "youden")


def choose_threshold(y_true, proba, policy: str = "fixed", target_sensitivity: float = 0.95) -> float:
    """The decision threshold on P(class 1) by ``policy``: ``"fixed"`` 0.5, ``"sensitivity"`` the
    highest threshold reaching ``target_sensitivity``, ``"youden"`` Youden's J. ``proba``: (N, K);
    more than two classes decide by argmax (0.5 returned). Choose it on the probabilities the model
    will produce when the threshold is applied (same temperature, same test-time augmentation)."""
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"threshold policy must be one of {THRESHOLD_POLICIES}, got {policy!r}")
    p = np.asarray(proba)
    if p.ndim != 2 or p.shape[1] != 2 or policy == "fixed":
        return 0.5
    if policy == "sensitivity":
        return threshold_for_sensitivity(y_true, p[:, 1], target_sensitivity)
    return threshold_youden(y_true, p[:, 1])


def expected_calibration_error(y_true, proba, bins: int = 15) -> tuple[float, dict]:
    """ECE of the top-class confidence over equal-width bins; returns (ece, reliability table).

    The table has per bin: lower/upper edge, count, mean confidence, accuracy (for the diagram).
    """
    y, p = _check(y_true, proba)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    table = {"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "count": [], "confidence": [],
             "accuracy": []}
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        table["count"].append(n)
        table["confidence"].append(float(conf[sel].mean()) if n else float("nan"))
        table["accuracy"].append(float(correct[sel].mean()) if n else float("nan"))
        if n:
            ece += n / len(y) * abs(conf[sel].mean() - correct[sel].mean())
    return float(ece), table


def _logits(proba: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(proba, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p)  # softmax(log p / T) is temperature scaling for any K, binary included


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """Rescale probabilities (N, K) by a temperature: softmax(log(p) / T)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z = _logits(proba) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(y_true, proba) -> float:
    """Temperature T > 0 minimising the negative log-likelihood of ``apply_temperature(proba, T)``."""
    from scipy.optimize import minimize_scalar

    y, p = _check(y_true, proba)

    def nll(log_t):
        q = apply_temperature(p, float(np.exp(log_t)))
        return -np.mean(np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1)))

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


METRIC_KEYS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "ece")


def format_metrics(m: dict, prefix: str = "") -> str:
    """One line: ``accuracy 0.953  sensitivity 0.961 ...`` (NaN metrics left out)."""
    return prefix + "  ".join(f"{k} {m[k]:.3f}" for k in METRIC_KEYS if k in m and m[k] == m[k])
