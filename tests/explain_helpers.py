"""Tiny models and data shared by the explainability tests (no downloads, a few seconds each).

``left_half_model``: a CNN that multiplies its input by a constant mask keeping only the left
half, trained on images whose label is decided by a bright square in the left half (the right
half carries a decoy square with no information). Any faithful explanation must put its mass
on the left. ``synthetic_model``: a tiny custom_cnn fitted on tfxai's synthetic X-rays.
"""
from __future__ import annotations

import numpy as np

SIZE = 32


def left_signal_data(n: int, size: int = SIZE, seed: int = 0):
    """Images float32 (n, size, size, 1) in [0, 255] and labels (n,): label 1 iff a bright
    square sits in the left half; the right half gets a bright square at random (a decoy)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(60.0, 12.0, (n, size, size, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    half, side = size // 2, size // 4
    for i in range(n):
        for present, lo in ((y[i] == 1, 0), (rng.random() < 0.5, half)):
            if present:
                r = rng.integers(0, size - side)
                c = lo + rng.integers(0, half - side)
                x[i, r:r + side, c:c + side, 0] += 150.0
    return np.clip(x, 0, 255), y.astype(np.int64)


def left_half_model(size: int = SIZE, seed: int = 0, epochs: int = 12):
    """A trained tf_keras model whose input is zeroed on the right half inside the model.
    Returns (model, test images, test labels). The tests share one through the session fixture
    ``left_model`` (conftest.py)."""
    from tfxai._keras import keras, tf

    keras.utils.set_random_seed(seed)
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, :, : size // 2] = 1.0
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = keras.layers.Multiply(name="keep_left")([x, tf.constant(mask)])
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="left_half")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy",
                  metrics=["accuracy"])
    xtr, ytr = left_signal_data(512, size, seed)
    model.fit(xtr, ytr.astype(np.float32), epochs=epochs, batch_size=32, verbose=0)
    xte, yte = left_signal_data(64, size, seed + 1)
    return model, xte, yte


def synthetic_model(size: int = 32, seed: int = 0, epochs: int = 6, n: int = 256):
    """A tiny custom_cnn fitted on synthetic X-rays: (model, SyntheticXrays test set)."""
    from tfxai._keras import keras
    from tfxai.models import build_model
    from tfxai.synthetic import make_synthetic_xrays

    keras.utils.set_random_seed(seed)
    train = make_synthetic_xrays(n, size, seed=seed)
    model = build_model("custom_cnn", (size, size, 1), width=8, depth=3, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    model.fit(train.images[..., None].astype(np.float32), train.labels.astype(np.float32),
              epochs=epochs, batch_size=32, verbose=0)
    return model, make_synthetic_xrays(16, size, seed=seed + 7)


def left_mass(heatmaps: np.ndarray) -> np.ndarray:
    """Share of each (N, H, W) heatmap's total mass in the left half of the image."""
    h = np.asarray(heatmaps, np.float64)
    half = h.shape[-1] // 2
    return h[..., :half].sum(axis=(-2, -1)) / np.maximum(h.sum(axis=(-2, -1)), 1e-12)
