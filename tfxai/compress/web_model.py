"""The ``.tflite`` file of ``tfxai export --target web``: the model with its Grad-CAM inside.

The file computes Grad-CAM itself (:class:`WebModule`): the forward pass to the last conv block's
activations A (N, h, w, c), then the head (A -> class logits) and its gradient. The raw map of
class k is ``relu(sum_c mean_hw(d logit_k / d A) * A_c)`` resized bilinearly (half-pixel centres,
``tf.image.resize``) to S x S: exactly what :class:`tfxai.explain.GradCAM` computes before its
min-max normalisation, which the page applies. Only the head is differentiated, and ReLU's
gradient is written as ``dy * (y > 0)``: TFLite has no ReluGrad builtin, LiteRT.js no TF ops.
"""
from __future__ import annotations

import logging
import tempfile

from .._keras import keras, tf
from ..errors import ModelFileError

GRADCAM_DEFINITION = ("relu(sum_c mean_hw(d logit_k / d A) * A_c) of the last conv block's activations A, "
                      "resized bilinearly (half-pixel centres) to the input size, per class k; the page "
                      "min-max scales it to [0, 1] as tfxai.explain.GradCAM does")


_GRADIENTS_REGISTERED = False


def _register_builtin_gradients() -> None:
    """Register ReLU / ReLU6 gradients made of TFLite builtins (``dy * (y > 0)``), used through
    ``gradient_override_map`` while the head is traced; TensorFlow's own gradient is ReluGrad,
    which TFLite lacks. The registry is global, so this runs once, on first export."""
    global _GRADIENTS_REGISTERED
    if _GRADIENTS_REGISTERED:
        return

    @tf.RegisterGradient("TfxaiBuiltinRelu")
    def _relu(op, dy):
        return dy * tf.cast(op.outputs[0] > 0, dy.dtype)

    @tf.RegisterGradient("TfxaiBuiltinRelu6")
    def _relu6(op, dy):
        y = op.outputs[0]
        return dy * tf.cast(tf.logical_and(y > 0, y < 6), dy.dtype)

    _GRADIENTS_REGISTERED = True


class WebModule(tf.Module):
    """The model as the page runs it: ``serve(image)`` -> {"scores": (1, K) probabilities
    (temperature-scaled when the model has a temperature, as tfxai reports them), "gradcam":
    (1, K, S, S) raw Grad-CAM map per class (see the module docstring), "features": (1, D) the
    penultimate features the OOD guard reads (only when the model ends in a Dense layer)}.

    ``layer``: the Grad-CAM layer (default: the one :class:`tfxai.explain.GradCAM` finds).
    ValueError naming the model when no layer fits or the graph does not split at it."""

    def __init__(self, model, layer: str | None = None, temperature: float | None = None):
        super().__init__(name="tfxai_web")
        from ..explain.gradcam import build_cam_graph

        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0 or None, got {temperature!r}")
        graph = build_cam_graph(model, layer)
        self.layer_path = graph.layer_path
        outputs = [graph.logits]
        self.with_features = isinstance(model.layers[-1], keras.layers.Dense)
        if self.with_features:
            outputs.append(model.layers[-1].input)
        try:
            self.head = keras.Model(graph.raw_features, outputs, name="tfxai_web_head")
        except ValueError as err:  # "Graph disconnected": the rest of the model needs more than A
            raise ValueError(f"the output of {model.name!r} does not depend on its Grad-CAM layer "
                             f"{'/'.join(self.layer_path)!r} alone ({err})") from None
        self.body = keras.Model(model.inputs, graph.raw_features, name="tfxai_web_body")
        self.size, self.channels = int(model.input_shape[1]), int(model.input_shape[3])
        self.num_classes = graph.num_classes
        self.temperature = temperature
        spec = tf.TensorSpec((1, self.size, self.size, self.channels), tf.float32, name="image")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, image):
        _register_builtin_gradients()
        feats = self.body(image, training=False)
        overrides = {"Relu": "TfxaiBuiltinRelu", "Relu6": "TfxaiBuiltinRelu6"}
        with tf.compat.v1.get_default_graph().gradient_override_map(overrides):
            out = self.head(feats, training=False)
        logits = out[0] if self.with_features else out
        maps = []
        for k in range(self.num_classes):
            # tf.gradients (not a tape) honours the override map; one class at a time: K is small.
            grads = tf.gradients(logits[:, k], feats)[0]
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1, keepdims=True))
            maps.append(tf.image.resize(cam, (self.size, self.size), method="bilinear")[..., 0])
        if self.temperature:
            # tfxai.metrics.apply_temperature: softmax(log(clip(p, 1e-7, 1 - 1e-7)) / T)
            p = tf.clip_by_value(tf.nn.softmax(logits, axis=-1), 1e-7, 1 - 1e-7)
            scores = tf.nn.softmax(tf.math.log(p) / self.temperature, axis=-1)
        else:
            scores = tf.nn.softmax(logits, axis=-1)
        result = {"scores": scores, "gradcam": tf.stack(maps, axis=1)}
        if self.with_features:
            result["features"] = out[1]
        return result


class _DropUnsavedGradientWarning(logging.Filter):
    """The converter reloads the SavedModel and warns that the overridden ReLU gradients were not
    saved: true and harmless (the gradients are already part of the graph)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsaved custom gradients" not in record.getMessage()


def convert_web(module: WebModule) -> bytes:
    """The float32 ``.tflite`` of :class:`WebModule` (TFLite builtins only; signature
    "serving_default"). :class:`ModelFileError` naming the ops when the head needs ops TFLite
    lacks."""
    concrete = module.serve.get_concrete_function()
    absl = logging.getLogger("absl")
    quiet = _DropUnsavedGradientWarning()
    with tempfile.TemporaryDirectory(prefix="tfxai-web-sm-") as tmp:
        # custom gradients off: saving them would trace the registered gradients without an op.
        tf.saved_model.save(module, tmp, signatures={"serving_default": concrete},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        absl.addFilter(quiet)
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return converter.convert()
        except Exception as err:  # the converter raises ConverterError and others; re-raised with the ops
            ops = sorted(set(_unsupported_ops(str(err))))
            raise ModelFileError(f"the model's Grad-CAM head needs TensorFlow ops that TFLite has no builtin "
                                 f"for ({', '.join(ops) or str(err).strip().splitlines()[-1]}); the web "
                                 f"export cannot run it in the browser") from err
        finally:
            absl.removeFilter(quiet)


def _unsupported_ops(message: str) -> list[str]:
    for line in message.splitlines():
        if line.strip().startswith("TF Select ops:"):
            return [op.strip() for op in line.split(":", 1)[1].split(",") if op.strip()]
    return []


def tflite_ops(path: str) -> list[str]:
    """The sorted builtin op names of a ``.tflite`` file (what LiteRT.js must have kernels for)."""
    from ai_edge_litert.interpreter import Interpreter

    return sorted({d["op_name"] for d in Interpreter(model_path=path)._get_ops_details()})
