"""Tiny models and a learnable toy task shared by the pruning and export tests."""
from __future__ import annotations

import numpy as np

from tfxai._keras import keras
from tfxai.models import build_model


def toy_images(n: int, size: int = 32, channels: int = 1, num_classes: int = 2, seed: int = 0):
    """uint8 images (n, size, size, channels) of noise with a bright square whose position
    (one of ``num_classes`` horizontal bands) is the label; int64 labels (n,). Learnable in seconds."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 90, (n, size, size, channels)).astype(np.uint8)
    band = size // num_classes
    side = max(3, band // 2)
    for i, lab in enumerate(labels):
        top = lab * band + rng.integers(0, band - side + 1)
        left = rng.integers(0, size - side + 1)
        images[i, top:top + side, left:left + side] = rng.integers(180, 256)
    return images, labels.astype(np.int64)


def tiny_cnn(channels: int = 1, num_classes: int = 2, size: int = 32, seed: int = 0) -> keras.Model:
    """custom_cnn, width 8, depth 3: about 12k parameters, two layers above 1024 weights."""
    keras.utils.set_random_seed(seed)
    return build_model("custom_cnn", (size, size, channels), num_classes, width=8, depth=3, dropout=0.0)


def compile_for(model: keras.Model, num_classes: int, learning_rate: float = 3e-3) -> None:
    loss = "binary_crossentropy" if num_classes == 2 else "categorical_crossentropy"
    model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=["accuracy"])


def fit(model: keras.Model, images, labels, num_classes: int = 2, epochs: int = 3, batch_size: int = 16,
        callbacks=(), learning_rate: float = 3e-3):
    from tfxai.data import encode_labels

    compile_for(model, num_classes, learning_rate)
    # A fit of a few steps runs faster eagerly: tracing the train step of a pruning-wrapped
    # MobileNetV2 costs ~20 s, three times the steps themselves (same weights, same masks).
    model.run_eagerly = epochs * -(-len(images) // batch_size) <= 8
    return model.fit(images.astype(np.float32), encode_labels(labels, num_classes), epochs=epochs,
                     batch_size=batch_size, callbacks=list(callbacks), verbose=0, shuffle=True)


def trained_tiny_cnn(channels: int = 1, num_classes: int = 2, n: int = 320, epochs: int = 6, seed: int = 0):
    """(model, images, labels) with the model fitted on the toy task (well above chance)."""
    images, labels = toy_images(n, channels=channels, num_classes=num_classes, seed=seed)
    model = tiny_cnn(channels, num_classes, seed=seed)
    fit(model, images, labels, num_classes, epochs=epochs)
    return model, images, labels
