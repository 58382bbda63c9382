"""Figures people would rather look at than read: training curves, ROC/PR, confusion matrix,
reliability diagram. Every function writes a PNG atomically and returns its path."""
from __future__ import annotations

import numpy as np

from .files import write_atomic


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported when first needed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; laptops in clinics and CI have no display
    # Titles carry file and class names: a '$' in them must print as itself, not start math text.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    plt = pyplot()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
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
    return _save(fig, path)


def roc_pr_curves(y_true, p_pos, path: str, threshold: float | None = None, title: str = "") -> str:
    """ROC and precision-recall curves for the positive class, with the operating point marked."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = pyplot()
    fpr, tpr, _ = roc_curve(y_true, p_pos)
    prec, rec, _ = precision_recall_curve(y_true, p_pos)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    a.plot(fpr, tpr, label=f"ROC-AUC {auc(fpr, tpr):.3f}")
    a.plot([0, 1], [0, 1], "k--", lw=0.8)
    a.set_xlabel("1 - specificity (false positive rate)")
    a.set_ylabel("sensitivity")
    b.plot(rec, prec)
    b.set_xlabel("recall (sensitivity)")
    b.set_ylabel("precision")
    if threshold is not None:
        y = np.asarray(y_true)
        pred = np.asarray(p_pos) >= threshold
        sens = pred[y == 1].mean() if (y == 1).any() else 0.0
        fp = pred[y == 0].mean() if (y == 0).any() else 0.0
        a.plot([fp], [sens], "ro", label=f"threshold {threshold:.3f}")
    a.legend(loc="lower right")
    a.grid(alpha=0.3)
    b.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix_plot(cm, class_names, path: str, title: str = "") -> str:
    plt = pyplot()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(3.2 + 0.6 * len(class_names), 3 + 0.5 * len(class_names)))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return _save(fig, path)


def reliability_diagram(tables: dict[str, dict], path: str, title: str = "") -> str:
    """``tables``: label -> reliability table from ``metrics.expected_calibration_error``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    for label, t in tables.items():
        conf, acc = np.asarray(t["confidence"]), np.asarray(t["accuracy"])
        ok = ~np.isnan(conf)
        ax.plot(conf[ok], acc[ok], "o-", label=label)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability diagram")
    fig.tight_layout()
    return _save(fig, path)
