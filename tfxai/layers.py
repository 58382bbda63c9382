"""tfxai's own Keras layers that a saved model may contain, and the one table of them that
:func:`tfxai.io.model_files.load_model` gives Keras (models load with ``safe_mode=True``, so a layer must be
a registered class, never Python code).

The in-model preprocessing layers live in :mod:`tfxai.preprocessing`; this module adds the
structural ones, which hold no weights and convert to TFLite builtins.
"""
from __future__ import annotations

from . import preprocessing
from ._keras import keras, tf


@keras.saving.register_keras_serializable(package="tfxai")
class ChannelSlice(keras.layers.Layer):
    """``x[..., start:stop]``: the channels of one member inside an ensemble's concatenated
    feature maps (:mod:`tfxai.ensemble`). Input (N, H, W, C) -> (N, H, W, stop - start); TFLite
    STRIDED_SLICE forward, PAD backward. Grad-CAM looks through it to the concatenated maps."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= int(start) < int(stop):
            raise ValueError(f"need 0 <= start < stop, got start={start!r}, stop={stop!r}")
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        start, stop, channels = self.start, self.stop, int(x.shape[-1])

        @tf.custom_gradient
        def channel_slice(t):
            def grad(dy):
                # Zero-padding, a TFLite builtin: the web export differentiates through this layer in the
                # browser, and the slice's own gradient (StridedSliceGrad) has no builtin.
                return tf.pad(dy, [[0, 0]] * (len(dy.shape) - 1) + [[start, channels - stop]])
            return t[..., start:stop], grad
        return channel_slice(x)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([*input_shape[:-1], self.stop - self.start])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


# Registered name ("tfxai>ChannelSlice") -> class: every tfxai layer a saved model may contain.
SERIALIZABLE_LAYERS = {**preprocessing.SERIALIZABLE_LAYERS, keras.saving.get_registered_name(ChannelSlice): ChannelSlice}
