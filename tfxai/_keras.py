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

__all__ = ["keras", "tf"]
