"""Figures people would rather look at than read: training curves, ROC/PR, confusion matrix,
reliability diagram. Every function writes a PNG atomically (:func:`save_figure`) and returns its
path."""
from __future__ import annotations

import os

import numpy as np

from .io.atomic import write_atomic
from .metrics import expected_calibration_error


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported when first needed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; laptops in clinics and CI have no display
    # Titles carry file and class names: a '$' in them must print as itself, not start math text.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 120, tight: bool = True) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically (its folder made when missing), close it and
    return ``path``; ``tight``: crop to the drawn content."""
    plt = pyplot()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None,
                                                   format="png"))
    finally:
        plt.close(fig)  # also when the disk is full: figures are not garbage-collected by pyplot
    return path


def training_curves(history: dict[str, list[float]], path: str, title: str = "") -> str:
    """One panel per metric (loss, accuracy, auc, f1, ...), train and validation lines."""
    plt = pyplot()
    names = [k for k in ("loss", "accuracy", "auc", "f1", "precision", "recall") if k in history]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    epochs = np.asarray(history.get("epoch", range(len(history[names[0]])))) + 1
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, history[name], "o-", label="train", ms=3)
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "o-", label="validation", ms=3)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def roc_pr_curves(y_true, p_pos, path: str, threshold: float | None = None, title: str = "") -> str:
    """ROC and precision-recall curves for the positive class (scikit-learn's displays), with the
    operating point at ``threshold`` marked on both."""
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    plt = pyplot()
    y, p = np.asarray(y_true), np.asarray(p_pos)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    RocCurveDisplay.from_predictions(y, p, ax=a, name="model", plot_chance_level=True)
    PrecisionRecallDisplay.from_predictions(y, p, ax=b, name="model", plot_chance_level=True)
    a.set_xlabel("1 - specificity (false positive rate)")
    a.set_ylabel("sensitivity")
    b.set_xlabel("recall (sensitivity)")
    b.set_ylabel("precision")
    if threshold is not None:
        pred = p >= threshold
        sens = pred[y == 1].mean() if (y == 1).any() else 0.0
        fpr = pred[y == 0].mean() if (y == 0).any() else 0.0
        precision = y[pred].mean() if pred.any() else 1.0
        a.plot([fpr], [sens], "ro", label=f"threshold {threshold:.3f}")
        b.plot([sens], [precision], "ro", label=f"threshold {threshold:.3f}")
    for ax in (a, b):
        ax.legend(loc="lower right" if ax is a else "lower left", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrix_plot(cm, class_names, path: str, title: str = "") -> str:
    """The confusion matrix (rows true, columns predicted) with scikit-learn's display."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.2 + 0.6 * len(class_names), 3 + 0.5 * len(class_names)))
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=list(class_names)).plot(ax=ax, cmap="Blues",
                                                                                 colorbar=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return save_figure(fig, path)


def reliability_diagram(curves: dict[str, tuple], path: str, title: str = "", bins: int = 10) -> str:
    """``curves``: label -> (labels (N,), probabilities (N, K)). Binary: scikit-learn's
    ``CalibrationDisplay`` of the positive class; more classes: top-class confidence against
    accuracy per confidence bin."""
    from sklearn.calibration import CalibrationDisplay


    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for label, (y, proba) in curves.items():
        proba = np.asarray(proba)
        if proba.shape[1] == 2:
            CalibrationDisplay.from_predictions(np.asarray(y), proba[:, 1], n_bins=bins, ax=ax, name=label)
        else:
            table = expected_calibration_error(y, proba, bins)[1]
            conf, acc = np.asarray(table["confidence"]), np.asarray(table["accuracy"])
            ok = ~np.isnan(conf)
            ax.plot(conf[ok], acc[ok], "o-", label=label)
            ax.set_xlabel("confidence (top class)")
            ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability diagram")
    fig.tight_layout()
    return save_figure(fig, path)


def cv_curves(curves: list[tuple], rows: list[dict], path: str, threshold: float, title: str = "") -> str:
    """A k-fold run at a glance: each fold's out-of-fold ROC curve (``curves``: (labels, P(class 1))
    per fold) with its operating point at ``threshold``, and each fold's ROC-AUC, sensitivity and
    specificity there (``rows``: per-fold metrics, as in ``cv_metrics.json``) against their mean."""
    from sklearn.metrics import roc_curve

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for k, (y, p) in enumerate(curves):
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        line, = a.plot(fpr, tpr, lw=1.2, label=f"fold {k + 1} (AUC {rows[k]['roc_auc']:.3f})")
        pred = np.asarray(p) >= threshold
        a.plot([pred[np.asarray(y) == 0].mean()], [pred[np.asarray(y) == 1].mean()], "o", color=line.get_color())
    a.plot([0, 1], [0, 1], ls=":", color="grey")
    a.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity",
          title=f"out-of-fold ROC curves; dots: threshold {threshold:.3f}")
    a.legend(loc="lower right", fontsize=8)
    keys = [("roc_auc", "ROC-AUC"), ("sensitivity", "sensitivity"), ("specificity", "specificity")]
    for j, (key, label) in enumerate(keys):
        values = [r[key] for r in rows]
        b.scatter([j] * len(values), values, alpha=0.7, label=label)
        b.hlines(np.nanmean(values), j - 0.3, j + 0.3, color="black")
    b.set_xticks(range(len(keys)), [label for _, label in keys])
    b.set(title="per fold (dots), mean (bar)", ylim=(None, 1.02))
    for ax in (a, b):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
