"""The one place where tfxai chooses its Keras.

tfxai uses Keras 2 (the ``tf_keras`` package) everywhere, because tensorflow-model-optimization
only prunes tf_keras models. ``TF_USE_LEGACY_KERAS=1`` makes ``tf.keras`` resolve to tf_keras too,
so libraries that reach Keras through ``tf.keras`` (tf-keras-vis) see the same classes as we do.
It only takes effect if set before TensorFlow is first imported, hence ``setdefault`` here, once.
"""
import contextlib
import os

from .errors import DEBUG_ENV

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what native code writes to file descriptor 2 while TensorFlow loads. Its start-up
    lines (oneDNN, CUDA drivers, absl) are printed before absl reads TF_CPP_MIN_LOG_LEVEL, so only
    the descriptor can keep them out of every command's output; Python errors are raised after it
    is restored, so nothing a user needs is lost."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding host): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


if os.environ.get(DEBUG_ENV):
    import tensorflow as tf  # noqa: E402
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # and the C++ log after start-up (cuInit errors)
    with _quiet_native_stderr():
        import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["compiled_call", "keras", "tf"]


def compiled_call(model):
    """``model(x, training=False)`` as one compiled graph for any batch size: an eager Keras call
    costs 10-20x the model itself on a small batch. Returns ``fn(images, training=False)`` -> a
    tensor, callable like the model (``training`` must stay False)."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    # autograph=False: nothing to convert in a plain call, and AutoGraph cannot read a lambda's
    # source (it warned on every command that predicted).
    graph = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)

    def call(images, training: bool = False):
        if training:
            raise ValueError("compiled_call is for inference (training=False)")
        return graph(tf.constant(images, tf.float32))
    return call
