"""Pictures of explanations: overlays, ``xai_comparison.png`` and ``sample_xray.png``.

matplotlib draws with the Agg backend (files only, no display), chosen inside each function so
that importing this module changes nothing; every figure is written atomically
(:func:`tfxai.plots.save_figure`).
"""
from __future__ import annotations

import numpy as np

from ..plots import pyplot, save_figure
from .types import METHOD_TITLES, Explanation

MAX_SIDE = 768  # figures show large originals downscaled to this side


def _grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = img.mean(axis=2)
    return np.clip(img, 0, 255).astype(np.uint8)


def _fit(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            colormap: str = "jet") -> np.ndarray:
    """RGB uint8 (H, W, 3): grey ``image`` (H, W[, C]) under ``heatmap`` (any size, values in
    [0, 1], resized to the image) in a colour map; alpha is the heatmap's opacity."""
    import cv2
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    grey = _grey(image)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, 1)
    if heat.shape != grey.shape:
        heat = cv2.resize(heat, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = matplotlib.colormaps[colormap](heat)[..., :3]
    base = np.repeat(grey[..., None] / 255.0, 3, axis=2)
    return (np.clip((1 - alpha) * base + alpha * colours, 0, 1) * 255).astype(np.uint8)


def comparison_figure(path: str, image: np.ndarray, explanations: list[Explanation],
                      class_names: list[str] | tuple[str, ...], predicted: int,
                      confidence: float, true_label: str | None = None,
                      heatmaps: list[np.ndarray] | None = None, metrics: dict | None = None,
                      title: str | None = None) -> str:
    """Write ``xai_comparison.png``: the original, then one overlay per explanation titled with
    the method (and its deletion/insertion areas when ``metrics[method]`` has them).

    image: the picture to show (original resolution, uint8 (H, W[, C])); heatmaps: the maps to
    draw on it (default: each explanation's heatmap, resized); the figure title names the
    predicted class, confidence and, when known, the true label. Returns ``path``.
    """
    plt = pyplot()
    shown = _fit(_grey(image))
    maps = heatmaps if heatmaps is not None else [e.heatmap for e in explanations]
    n = 1 + len(explanations)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.9), squeeze=False, layout="constrained")
    axes = axes[0]
    axes[0].imshow(shown, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("original")
    for ax, exp, heat in zip(axes[1:], explanations, maps):
        ax.imshow(overlay(shown, heat))
        label = METHOD_TITLES.get(exp.method, exp.method)
        m = (metrics or {}).get(exp.method, {})
        if "deletion_auc" in m:
            label += f"\ndel {m['deletion_auc']:.2f} / ins {m['insertion_auc']:.2f}"
        ax.set_title(label, fontsize=10)
    for ax in axes:
        ax.axis("off")
    heading = title or f"predicted {class_names[predicted]} ({confidence:.1%})"
    if true_label is not None:
        heading += f" - true: {true_label}"
    fig.suptitle(heading)
    return save_figure(fig, path, dpi=110, tight=False)


def sample_figure(path: str, images: list[np.ndarray], titles: list[str], columns: int = 4) -> str:
    """Write ``sample_xray.png``: a grid of X-rays (uint8 (H, W[, C]) each) with titles
    (e.g. "PNEUMONIA 93% (true NORMAL)"). Returns ``path``."""
    if not images:
        raise ValueError("sample_figure needs at least one image")
    plt = pyplot()
    cols = max(1, min(int(columns), len(images)))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles):
        ax.imshow(_fit(_grey(img), 512), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, tight=False)


def curves_figure(path: str, curves: dict[str, dict]) -> str:
    """Deletion and insertion curves of several methods side by side.

    curves: {method: {"deletion": Curve, "insertion": Curve}} (from metrics.faithfulness)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, both in curves.items():
        for ax, kind in zip(axes, ("deletion", "insertion")):
            c = both[kind]
            ax.plot(c.fractions, c.scores, label=f"{METHOD_TITLES.get(method, method)} "
                                                 f"(AUC {c.auc:.2f})")
    for ax, kind in zip(axes, ("deletion", "insertion")):
        ax.set_title(f"{kind} (most important pixels first)")
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "revealed"))
        ax.set_ylabel("target probability")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, tight=False)
