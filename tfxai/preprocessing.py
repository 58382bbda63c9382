"""In-model preprocessing that removes acquisition differences between X-ray machines.

Every layer here maps raw pixels float32 (N, H, W, C) in [0, 255] to float32 (N, H, W, C) in
[0, 255], so it sits in front of a model's own rescaling without changing anything else. The
layers hold no weights, are registered Keras serializables (a saved model loads with
``safe_mode=True``: :func:`tfxai.io.model_files.load_model` passes them, through :mod:`tfxai.layers`), and use
only TFLite builtins (mean, sub, mul, div, sqrt, rsqrt, logistic, average pooling, min/max): a
model exported for a phone carries its preprocessing with it. An int8 file keeps these layers in
float32 (:func:`tfxai.compress.tflite.convert_tflite`): older runtimes such as MediaPipe 0.10.21
have no int8 DIV kernel and do not know SQRT's int8 version.

* ``standardize``: per-image intensity standardisation, ``128 + 48 * (x - mean) / std``.
* ``equalize``: smooth histogram equalisation; each image's intensity CDF, estimated on ``bins``
  levels, is applied as a piecewise-linear map (global contrast and gamma differences vanish).
* ``local_contrast``: CLAHE-like local contrast normalisation, ``(x - local mean) / local std``
  over a window of ``window`` of the side, clipped (uneven exposure, heavy or light processing).
* ``equalize_local``: equalisation then local contrast normalisation.
* the ``focus`` model option (:class:`LungFocus`, after the above): ``mask`` fades the borders,
  the corners and the abdomen to grey; ``crop`` cuts out the box where the lungs lie and resizes it.

Colour inputs are reduced to their channel mean first (X-rays are grey; R = G = B) and the result
is repeated on every channel.
"""
from __future__ import annotations

from ._keras import keras, tf
from .model_specs import FOCUS, PREPROCESSING


def _grey(x):
    return x if x.shape[-1] == 1 else tf.reduce_mean(x, axis=-1, keepdims=True)


def _affine_clip255(z, scale: float, offset: float):
    """clip(scale * z + offset, 0, 255), written as (255 / 6) * relu6(...) with the affine map
    inside: TFLite's int8 converter gives a tensor followed by a constant multiply-add and a clip
    the *output's* quantization range (measured: 17-60 grey levels of error); this form quantizes
    to about 2 grey levels."""
    return (255.0 / 6.0) * tf.nn.relu6(z * (6.0 * scale / 255.0) + 6.0 * offset / 255.0)


def _like(y, x):
    return y if x.shape[-1] == 1 else tf.concat([y] * int(x.shape[-1]), axis=-1)


@keras.saving.register_keras_serializable(package="tfxai")
class PerImageStandardize(keras.layers.Layer):
    """y = clip(center + spread * (x - mean(x)) / std(x), 0, 255), statistics per image.

    Input and output float32 (N, H, W, C) in [0, 255]. A constant image maps to ``center``.
    """

    def __init__(self, center: float = 128.0, spread: float = 48.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < spread <= 128.0:
            raise ValueError(f"spread must be in (0, 128], got {spread!r}")
        self.center, self.spread = float(center), float(spread)

    def call(self, x):
        g = _grey(tf.cast(x, tf.float32))
        mean = tf.reduce_mean(g, axis=[1, 2, 3], keepdims=True)
        d = g - mean
        var = tf.reduce_mean(d * d, axis=[1, 2, 3], keepdims=True)
        return _like(_affine_clip255(d * tf.math.rsqrt(var + 1.0), self.spread, self.center), x)

    def get_config(self):
        return {**super().get_config(), "center": self.center, "spread": self.spread}


@keras.saving.register_keras_serializable(package="tfxai")
class HistogramEqualize(keras.layers.Layer):
    """Smooth per-image histogram equalisation.

    The CDF is estimated on ``bins`` equal-width intensity levels from an average-pooled copy of
    the image (``pool`` x ``pool``), with a logistic step of width ``softness`` bins instead of a
    hard count, then applied to every pixel as a piecewise-linear map. Input and output float32
    (N, H, W, C) in [0, 255]; output of a non-constant image spans [0, 255].
    """

    def __init__(self, bins: int = 32, pool: int = 4, softness: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if not 4 <= int(bins) <= 256:
            raise ValueError(f"bins must be in [4, 256], got {bins!r}")
        if int(pool) < 1 or not softness > 0:
            raise ValueError(f"pool must be >= 1 and softness > 0, got pool={pool!r}, softness={softness!r}")
        self.bins, self.pool, self.softness = int(bins), int(pool), float(softness)

    def call(self, x):
        g = _grey(tf.cast(x, tf.float32))
        width = 255.0 / self.bins
        edges = tf.constant([k * width for k in range(self.bins + 1)], tf.float32)  # (K+1,)
        small = g
        if self.pool > 1 and g.shape[1] is not None and g.shape[1] >= 4 * self.pool:
            small = tf.nn.avg_pool2d(g, self.pool, self.pool, "VALID")
        # cdf[k] ~ share of pixels below edge k: mean of logistic((edge - x) / tau), (N, 1, 1, K+1)
        cdf = tf.reduce_mean(tf.sigmoid((edges - small) / (self.softness * width)), axis=[1, 2], keepdims=True)
        lo, hi = cdf[..., :1], cdf[..., -1:]
        cdf = (cdf - lo) / tf.maximum(hi - lo, 1e-6)
        steps = cdf[..., 1:] - cdf[..., :-1]  # (N, 1, 1, K): how much output range each bin gets
        ramps = tf.minimum(tf.nn.relu(g - edges[:-1]), width) / width  # (N, H, W, K) in [0, 1]
        return _like(_affine_clip255(tf.reduce_sum(steps * ramps, axis=-1, keepdims=True), 255.0, 0.0), x)

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "pool": self.pool, "softness": self.softness}


@keras.saving.register_keras_serializable(package="tfxai")
class LocalContrastNormalize(keras.layers.Layer):
    """CLAHE-like local contrast normalisation:
    y = clip(128 + spread * (x - m) / (s + floor), 0, 255), with m and s the mean and standard
    deviation over a square window of ``window`` times the image side (computed on a
    ``pool``-times smaller copy and resized back, so the cost stays small at any size).
    ``floor`` (in grey levels) limits the gain in flat regions, like CLAHE's clip limit.
    Input and output float32 (N, H, W, C) in [0, 255].
    """

    def __init__(self, window: float = 0.25, pool: int = 4, spread: float = 48.0, floor: float = 8.0,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < window <= 1.0:
            raise ValueError(f"window must be in (0, 1], got {window!r}")
        if int(pool) < 1 or not spread > 0 or not floor > 0:
            raise ValueError(f"pool must be >= 1, spread and floor > 0; got {pool!r}, {spread!r}, {floor!r}")
        self.window, self.pool, self.spread, self.floor = float(window), int(pool), float(spread), float(floor)

    def call(self, x):
        g = _grey(tf.cast(x, tf.float32))
        h, w = int(g.shape[1]), int(g.shape[2])
        pool = self.pool if min(h, w) >= 8 * self.pool else 1
        small = tf.nn.avg_pool2d(g, pool, pool, "VALID") if pool > 1 else g
        k = max(3, int(round(self.window * min(h, w) / pool)) | 1)
        m = tf.nn.avg_pool2d(small, k, 1, "SAME")
        m2 = tf.nn.avg_pool2d(small * small, k, 1, "SAME")
        s = tf.sqrt(tf.nn.relu(m2 - m * m) + 1.0)
        if pool > 1:
            m = tf.image.resize(m, (h, w), "bilinear")
            s = tf.image.resize(s, (h, w), "bilinear")
        return _like(_affine_clip255((g - m) / (s + self.floor), self.spread, 128.0), x)

    def get_config(self):
        return {**super().get_config(), "window": self.window, "pool": self.pool, "spread": self.spread,
                "floor": self.floor}


# Where the lungs sit in Kermany's 224-px training copies (scripts/lung_box.py: bounding boxes of
# tfxai.explain.lungs.lung_mask on 600 random training films, 560 with a plausible mask), as shares
# of the side, 2nd / 50th / 98th percentile: top 0.04 / 0.19 / 0.47, bottom 0.59 / 0.84 / 0.96,
# left 0.07 / 0.14 / 0.23, right 0.72 / 0.86 / 0.95. Children are positioned loosely, so a fixed
# window can only cut what lies beyond nearly every lung: the borders, the corners (burnt-in
# markers) and the lowest strip (the abdomen).
FOCUS_BOX = (0.04, 0.95, 0.06, 0.94)  # top, bottom, left, right


@keras.saving.register_keras_serializable(package="tfxai")
class LungFocus(keras.layers.Layer):
    """A weight-free focus on the lung fields, the same in training and at inference (it is inside
    the model, so every export carries it). Input and output float32 (N, H, W, C) in [0, 255].

    ``mode="mask"``: outside a rounded window through ``box`` (top, bottom, left, right as shares
    of the side; a super-ellipse of exponent 8: nearly a rectangle that cuts the corners, fading out
    over the last ``softness`` of its half-width), pixels fade to the image's own mean grey, so no new
    edge appears for the model to learn. ``mode="crop"``: ``box`` is cut out and resized back to
    (H, W), bilinear, so the thorax fills the input. TFLite: mean, mul, add / strided slice and
    bilinear resize, float32 and int8.
    """

    def __init__(self, mode: str = "mask", box=FOCUS_BOX, softness: float = 0.08, **kwargs):
        super().__init__(**kwargs)
        top, bottom, left, right = (float(v) for v in box)
        if mode not in FOCUS[1:]:
            raise ValueError(f"mode must be one of {FOCUS[1:]}, got {mode!r}")
        if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0) or not 0 < softness <= 1:
            raise ValueError(f"box must be (top, bottom, left, right) with 0 <= top < bottom <= 1 and 0 <= left < "
                             f"right <= 1, and softness in (0, 1]; got {box!r}, {softness!r}")
        self.mode, self.box, self.softness = mode, (top, bottom, left, right), float(softness)

    def window(self, height: int, width: int):
        """float32 (H, W) in [0, 1]: 1 inside the rounded window, 0 outside ``box``, a smooth fade between."""
        import numpy as np

        top, bottom, left, right = self.box
        yy = ((np.arange(height) + 0.5) / height - (top + bottom) / 2) / ((bottom - top) / 2)
        xx = ((np.arange(width) + 0.5) / width - (left + right) / 2) / ((right - left) / 2)
        radius = (yy[:, None] ** 8 + xx[None, :] ** 8) ** 0.125  # 1 on the window's edge
        t = np.clip((1.0 - radius) / self.softness, 0.0, 1.0)
        return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep

    def build(self, input_shape):
        # The model's own input size (training feeds batches whose spatial shape is not static).
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"LungFocus needs a fixed image size, got input shape {tuple(input_shape)}")
        self.size = (int(input_shape[1]), int(input_shape[2]))
        super().build(input_shape)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        h, w = self.size
        top, bottom, left, right = self.box
        if self.mode == "crop":
            part = x[:, round(top * h):round(bottom * h), round(left * w):round(right * w), :]
            return tf.image.resize(part, (h, w), method="bilinear")
        m = tf.constant(self.window(h, w)[None, :, :, None])
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        return x * m + mean * (1.0 - m)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "box": list(self.box), "softness": self.softness}


# Registered name ("tfxai>HistogramEqualize") -> class: what a saved model may contain (for loading).
SERIALIZABLE_LAYERS = {keras.saving.get_registered_name(c): c
                       for c in (PerImageStandardize, HistogramEqualize, LocalContrastNormalize, LungFocus)}


def preprocessing_layers(name: str) -> list[keras.layers.Layer]:
    """The layers for a ``preprocessing`` model option (one of ``PREPROCESSING``), applied in order."""
    if name not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {name!r}")
    return {
        "none": [],
        "standardize": [PerImageStandardize(name="standardize")],
        "equalize": [HistogramEqualize(name="equalize")],
        "local_contrast": [LocalContrastNormalize(name="local_contrast")],
        "equalize_local": [HistogramEqualize(name="equalize"), LocalContrastNormalize(name="local_contrast")],
    }[name]


def apply_preprocessing(x, name: str, focus: str = "none"):
    """Apply the ``name`` preprocessing, then the ``focus`` (one of FOCUS: :class:`LungFocus`), to a
    symbolic (N, H, W, C) [0, 255] tensor (functional API)."""
    if focus not in FOCUS:
        raise ValueError(f"focus must be one of {FOCUS}, got {focus!r}")
    for layer in preprocessing_layers(name):
        x = layer(x)
    # After the contrast layers: a masked border must not change how the image is equalised.
    return LungFocus(focus, name="lung_focus")(x) if focus != "none" else x
