"""The one place where tfxai chooses its Keras.

tfxai uses Keras 2 (the ``tf_keras`` package) everywhere, because tensorflow-model-optimization
only prunes tf_keras models. ``TF_USE_LEGACY_KERAS=1`` makes ``tf.keras`` resolve to tf_keras too,
so libraries that reach Keras through ``tf.keras`` (tf-keras-vis) see the same classes as we do.
It only takes effect if set before TensorFlow is first imported, hence ``setdefault`` here, once.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ start-up chatter out of the CLI

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["compiled_call", "keras", "tf"]


def compiled_call(model):
    """``model(x, training=False)`` as one compiled graph for any batch size: an eager Keras call
    costs 10-20x the model itself on a small batch. Returns ``fn(images, training=False)`` -> a
    tensor, callable like the model (``training`` must stay False)."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def call(images, training: bool = False):
        if training:
            raise ValueError("compiled_call is for inference (training=False)")
        return graph(tf.constant(images, tf.float32))
    return call
