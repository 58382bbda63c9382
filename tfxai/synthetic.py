"""Built-in synthetic chest-X-ray-like images, so the demo and the tests need no download.

Each image has a bright body, two darker lung fields, ribs, a spine, a heart shadow and noise.
"Pneumonia" images carry one to three soft opacities inside the lungs; their binary masks are kept,
which lets the explainability metrics check where a heatmap points. These are cartoons: a model
trained on them says nothing about real X-rays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("NORMAL", "PNEUMONIA")


@dataclass(frozen=True)
class SyntheticXrays:
    """images: uint8 (N, S, S); labels: int64 (N,) with 1 = pneumonia; masks: bool (N, S, S)."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES


def _lungs(yy, xx, rng):
    """Two lung ellipses (left, right) with a little jitter; returns a float mask in [0, 1]."""
    lungs = np.zeros_like(yy)
    for side in (-1, 1):
        cx = 0.5 + side * (0.2 + rng.uniform(-0.02, 0.02))
        cy = 0.48 + rng.uniform(-0.03, 0.03)
        rx, ry = 0.14 + rng.uniform(-0.015, 0.015), 0.3 + rng.uniform(-0.03, 0.03)
        d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
        lungs = np.maximum(lungs, np.clip(1.5 - d, 0, 1) ** 0.5 * (d < 1.5))
    return lungs


def make_xray(size: int, pneumonia: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image: (uint8 (size, size), bool mask (size, size) of the opacities)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = np.exp(-(((xx - 0.5) / 0.42) ** 8 + ((yy - 0.55) / 0.55) ** 8))
    img = 0.15 + 0.55 * body
    lungs = _lungs(yy, xx, rng)
    img -= 0.4 * lungs
    # Ribs: bright curved bands across each lung, a little brighter where they cross the lungs.
    phase = rng.uniform(0, 2 * np.pi)
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (yy + 0.15 * (xx - 0.5) ** 2) * rng.uniform(9, 11) + phase)
    img += 0.12 * (ribs > 0.8) * body
    img += 0.25 * np.exp(-((xx - 0.5) / 0.035) ** 2) * body  # spine
    heart = np.exp(-(((xx - 0.55) / 0.12) ** 2 + ((yy - 0.66) / 0.12) ** 2))
    img += 0.22 * heart
    mask = np.zeros((size, size), bool)
    if pneumonia:
        for _ in range(rng.integers(1, 4)):
            side = rng.choice((-1, 1))
            cx = 0.5 + side * rng.uniform(0.14, 0.26)
            cy = rng.uniform(0.3, 0.66)
            r = rng.uniform(0.05, 0.1)
            blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
            blob *= lungs > 0.05
            img += rng.uniform(0.22, 0.35) * blob
            mask |= blob > 0.35
    img *= rng.uniform(0.85, 1.15)  # exposure differences between machines
    img += rng.normal(0, 0.035, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def make_synthetic_xrays(n: int, image_size: int = 64, pneumonia_fraction: float = 0.5,
                         seed: int = 0) -> SyntheticXrays:
    """``n`` images, ``round(n * pneumonia_fraction)`` of them pneumonia, shuffled, deterministic in seed."""
    if n < 1 or image_size < 16:
        raise ValueError(f"need n >= 1 and image_size >= 16, got n={n!r}, image_size={image_size!r}")
    if not 0.0 <= pneumonia_fraction <= 1.0:
        raise ValueError(f"pneumonia_fraction must be in [0, 1], got {pneumonia_fraction!r}")
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, np.int64)
    labels[: int(round(n * pneumonia_fraction))] = 1
    rng.shuffle(labels)
    pairs = [make_xray(image_size, bool(lab), rng) for lab in labels]
    return SyntheticXrays(np.stack([p[0] for p in pairs]), labels, np.stack([p[1] for p in pairs]))


NON_XRAY_KINDS = ("noise", "gradient", "stripes", "shapes", "text", "photo-like")


def make_non_xrays(n: int, image_size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` grey images that are not chest X-rays, uint8 (n, S, S), cycling through
    ``NON_XRAY_KINDS``: uniform noise, a smooth gradient, stripes, random filled shapes, lines of
    "text" and a blurred random field (a photo-like texture). For checking an out-of-distribution
    guard; deterministic in ``seed``."""
    import cv2

    if n < 1 or image_size < 16:
        raise ValueError(f"need n >= 1 and image_size >= 16, got n={n!r}, image_size={image_size!r}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    out = np.zeros((n, image_size, image_size), np.uint8)
    for i in range(n):
        kind = NON_XRAY_KINDS[i % len(NON_XRAY_KINDS)]
        if kind == "noise":
            img = rng.uniform(0, 255, (image_size, image_size))
        elif kind == "gradient":
            a = rng.uniform(0, 2 * np.pi)
            img = 255 * (np.cos(a) * xx + np.sin(a) * yy - min(0, np.cos(a)) - min(0, np.sin(a))) / 1.5
        elif kind == "stripes":
            img = 127.5 + 127.5 * np.sign(np.sin(2 * np.pi * rng.uniform(3, 12) * (xx if rng.random() < 0.5 else yy)))
        elif kind == "shapes":
            img = np.full((image_size, image_size), int(rng.integers(0, 256)), np.uint8)
            for _ in range(rng.integers(3, 8)):
                c = (int(rng.integers(0, image_size)), int(rng.integers(0, image_size)))
                cv2.circle(img, c, int(rng.integers(3, image_size // 3)), int(rng.integers(0, 256)), -1)
        elif kind == "text":
            img = np.full((image_size, image_size), 235, np.uint8)
            for row in range(4, image_size, max(8, image_size // 8)):
                cv2.putText(img, "".join(rng.choice(list("ABCDEFGH0123 "), 10)), (2, row + 6),
                            cv2.FONT_HERSHEY_PLAIN, max(0.4, image_size / 128), 20, 1)
        else:
            field = rng.normal(0, 1, (image_size // 4 + 1, image_size // 4 + 1))
            img = cv2.resize(field, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
            img = 127.5 + 60 * img
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_synthetic_dataset(root: str, counts: dict[str, int] | None = None, image_size: int = 64,
                            pneumonia_fraction: float = 0.5, seed: int = 0) -> dict[str, int]:
    """Write ``<root>/<split>/<CLASS>/synthNNNN.png`` plus ``<root>/masks/<split>/<CLASS>/synthNNNN.png``.

    counts: images per split, default {"train": 240, "val": 60, "test": 60}. Returns the counts.
    File names carry a fake patient id (``patientNNNN_synthNNNN.png``), one patient per image.
    """
    import cv2

    counts = dict(counts or {"train": 240, "val": 60, "test": 60})
    offset = 0
    for split_index, (split, n) in enumerate(counts.items()):
        data = make_synthetic_xrays(n, image_size, pneumonia_fraction, seed=seed + 1000 * split_index)
        for i, (img, lab, mask) in enumerate(zip(data.images, data.labels, data.masks)):
            cls = data.class_names[lab]
            name = f"patient{offset + i:05d}_synth{offset + i:05d}.png"
            for folder, arr in ((os.path.join(root, split, cls), img),
                                (os.path.join(root, "masks", split, cls), mask.astype(np.uint8) * 255)):
                os.makedirs(folder, exist_ok=True)
                if not cv2.imwrite(os.path.join(folder, name), arr):
                    raise OSError(f"could not write {os.path.join(folder, name)}")
        offset += n
    return counts
