"""``tf.data`` pipelines over decoded images, with seeded on-the-fly augmentation of whole batches.

Augmentation runs on batches with stateless random ops seeded from ``seed``, so a run is
reproducible. Geometric changes are small (an X-ray is never flipped left-right by default: the
heart is on the left); intensity changes (contrast, brightness, gamma) help across scanners.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .._keras import tf
from ..checks import check_bool, check_number


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation. Geometric: rotation (degrees), zoom and shift (fractions of the
    side); intensity: contrast, brightness and gamma ranges, which also help across scanners.
    No left-right flip by default: the heart sits on the left of a chest X-ray. Optional (off by
    default): aspect-ratio jitter, blur/sharpen, noise and down-up sampling. Every amount is a
    finite number >= 0 (checked when built)."""

    rotation: float = 7.0
    zoom: float = 0.1
    shift: float = 0.06
    contrast: float = 0.25
    brightness: float = 0.1
    gamma: float = 0.25
    hflip: bool = False
    # Off by default (0): aspect-ratio jitter (x and y scaled by exp(+-u), u in [-aspect, aspect]:
    # films squashed to a square from different shapes); blur/sharpen blend amount in [-blur, blur]
    # (Gaussian, sigma = side / 128); Gaussian noise std drawn in [0, noise] grey levels; down-up
    # sampling of half the images of a batch by a factor drawn in [1, downup] (downup > 1).
    aspect: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    downup: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            if f.name == "hflip":
                check_bool(f.name, self.hflip)
            else:
                check_number(f.name, getattr(self, f.name), 0)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


NO_AUGMENT = AugmentConfig(rotation=0.0, zoom=0.0, shift=0.0, contrast=0.0, brightness=0.0, gamma=0.0,
                           hflip=False)  # the optional ones are off by default


def augment_batch(images, seed, config: AugmentConfig):
    """Augment a float32 batch (B, H, W, C) of [0, 255] pixels with stateless ops seeded by ``seed`` (2,)."""
    b = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=8)

    def uniform(i, lo, hi):
        return tf.random.stateless_uniform([b], seeds[i], lo, hi)

    more = tf.random.experimental.stateless_split(seeds[0], num=6)  # for the optional ops below

    def uniform2(i, lo, hi, shape=None):
        return tf.random.stateless_uniform([b] if shape is None else shape, more[i], lo, hi)

    x = images
    if config.rotation or config.zoom or config.shift or config.hflip or config.aspect:
        angle = uniform(0, -1.0, 1.0) * (config.rotation * math.pi / 180.0)
        scale = 1.0 + uniform(1, -config.zoom, config.zoom) if config.zoom else tf.ones([b])
        tx = uniform(2, -config.shift, config.shift) * w
        ty = uniform(3, -config.shift, config.shift) * h
        flip = tf.where(uniform(4, 0.0, 1.0) < 0.5, -1.0, 1.0) if config.hflip else tf.ones([b])
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        cx, cy = (w - 1) / 2, (h - 1) / 2
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate+zoom about the centre.
        a0, a1 = cos * flip, -sin
        b0, b1 = sin * flip, cos
        if config.aspect:
            stretch = tf.exp(uniform2(0, -config.aspect, config.aspect))  # output x stretched by this
            a0, b0 = a0 / stretch, b0 / stretch
            a1, b1 = a1 * stretch, b1 * stretch
        a2 = cx - a0 * cx - a1 * cy - tx
        b2 = cy - b0 * cx - b1 * cy - ty
        zeros = tf.zeros([b])
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT")
    if config.downup and config.downup > 1.0:
        factor = uniform2(1, 1.0, config.downup, shape=[])
        small = tf.maximum(2, tf.cast(tf.round(tf.cast(tf.shape(x)[1:3], tf.float32) / factor), tf.int32))
        degraded = tf.image.resize(tf.image.resize(x, small, "area"), tf.shape(x)[1:3], "bilinear")
        pick = tf.cast(uniform2(2, 0.0, 1.0) < 0.5, tf.float32)[:, None, None, None]
        x = pick * degraded + (1.0 - pick) * x
    if config.blur:
        x = x + uniform2(3, -config.blur, config.blur)[:, None, None, None] * (_gaussian_blur(x) - x)
    if config.gamma:
        g = tf.exp(uniform(5, -config.gamma, config.gamma))[:, None, None, None]
        x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 1e-6, 1.0), g)
    if config.contrast:
        c = (1.0 + uniform(6, -config.contrast, config.contrast))[:, None, None, None]
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * c + mean
    if config.brightness:
        x = x + (255.0 * uniform(7, -config.brightness, config.brightness))[:, None, None, None]
    if config.noise:
        sigma = uniform2(4, 0.0, config.noise)[:, None, None, None]
        x = x + sigma * tf.random.stateless_normal(tf.shape(x), more[5])
    return tf.clip_by_value(x, 0.0, 255.0)


def _gaussian_blur(x):
    """Gaussian blur of a float32 (B, H, W, C) batch, sigma = max(1, H / 128) pixels, reflect padding."""
    sigma = max(1.0, float(x.shape[1] or 128) / 128.0)
    radius = int(math.ceil(2.5 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    c = int(x.shape[3])
    kx = tf.constant(np.tile(taps.reshape(1, -1, 1, 1), (1, 1, c, 1)))
    ky = tf.constant(np.tile(taps.reshape(-1, 1, 1, 1), (1, 1, c, 1)))
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    y = tf.nn.depthwise_conv2d(padded, kx, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(y, ky, [1, 1, 1, 1], "VALID")


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Model targets: float32 (N, 1) for binary (sigmoid), one-hot (N, K) otherwise."""
    labels = np.asarray(labels, np.int64)
    if num_classes == 2:
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


def make_dataset(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int = 32,
                 training: bool = False, augment: AugmentConfig | None = None, seed: int = 0,
                 sample_weights: np.ndarray | None = None):
    """A ``tf.data.Dataset`` of (float32 images (B, H, W, C) in [0, 255], targets[, weights]).

    training: shuffle each epoch and augment (with ``augment``, default AugmentConfig()).
    Deterministic for a given seed: the shuffle order and every augmentation come from it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    targets = encode_labels(labels, num_classes)
    parts = (images, targets) if sample_weights is None else (images, targets, sample_weights.astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if training:
        ds = ds.shuffle(min(len(images), 10000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_float(x, *rest):
        return (tf.cast(x, tf.float32), *rest)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    config = (augment or AugmentConfig()) if training else None
    if config is not None and config != NO_AUGMENT:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_batch(batch[0], s, config), *batch[1:]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
