"""Grad-CAM from scratch with ``tf.GradientTape`` (Selvaraju et al. 2017).

For each image: gradients of the target class score (pre-activation: the logit, not the
saturating probability) with respect to the last conv layer's activations, channel weights by
global average pooling of those gradients, weighted sum of the activations, ReLU, resize to the
input, min-max to [0, 1]. A whole batch goes through one compiled forward+backward pass.

The conv layer may sit inside a nested backbone (``keras.applications.MobileNetV2`` used as a
layer of a functional model): :func:`build_cam_graph` re-wires the outer graph so that the inner
layer's activations become an output connected to the outer inputs. The same graph feeds the
tf-keras-vis methods (``camvis.py``), which cannot reach such a layer on their own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._keras import keras, tf
from ..classifier import num_classes_of
from ..layers import ChannelSlice
from .types import HeatmapExplainer, normalize_heatmap

log = logging.getLogger(__name__)

# ChannelSlice: an ensemble's members read their channels of the concatenated maps, which are the
# layer explained (every member's map of the averaged score at once: see tfxai.ensemble).
_SKIP_TYPES = (keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.MaxPooling2D,
               keras.layers.AveragePooling2D, keras.layers.InputLayer,
               keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, ChannelSlice)


def _output_rank(layer) -> int | None:
    try:
        shape = layer.output_shape
    except (AttributeError, RuntimeError):
        return None
    return len(shape) if isinstance(shape, tuple) else None


def find_target_layer(model: keras.Model, layer: str | None = None) -> tuple[str, ...]:
    """Path of layer names from ``model`` to the layer Grad-CAM weights, e.g. ``("out_relu",)`` or
    ``("mobilenetv2_1.00_224", "out_relu")`` for a nested backbone.

    layer None: the last layer with a 4-D (N, h, w, c) output that is not pooling/dropout, looking
    inside nested models first. layer given: that name, searched in the model and its nested models.
    """
    def search(m, wanted):
        for lay in reversed(m.layers):
            if isinstance(lay, keras.Model):
                inner = search(lay, wanted)
                if inner is not None:
                    return (lay.name, *inner)
            if wanted is not None:
                if lay.name == wanted:
                    return (lay.name,)
            elif not isinstance(lay, (keras.Model, *_SKIP_TYPES)) and _output_rank(lay) == 4:
                return (lay.name,)
        return None

    path = search(model, layer)
    if path is None:
        if layer is not None:
            raise ValueError(f"model {model.name!r} has no layer named {layer!r} (also searched "
                             f"its nested models)")
        raise ValueError(f"model {model.name!r} has no layer with a 4-D output to explain")
    target = model
    for name in path:
        target = target.get_layer(name)
    if _output_rank(target) not in (4, None):
        raise ValueError(f"layer {'/'.join(path)!r} has output shape {target.output_shape}; "
                         f"Grad-CAM needs a 4-D (N, h, w, c) feature map")
    return path


def _split(model: keras.Model, path: tuple[str, ...]):
    """Run ``model``'s graph on its own inputs; return (features of ``path``, outputs, head_input)
    as symbolic tensors connected to ``model.inputs``. head_input is the input of the layer making
    the first output (None when that layer sits inside a nested model)."""
    out_layer, node_index, _ = model.outputs[0]._keras_history
    if len(path) == 1:
        features = model.get_layer(path[0]).get_output_at(0)
        node = out_layer._inbound_nodes[node_index]
        head_in = node.input_tensors if not isinstance(out_layer, keras.Model) else None
        return features, list(model.outputs), head_in
    nested = model.get_layer(path[0])
    inner_features, inner_outputs, _ = _split(nested, path[1:])
    inner = keras.Model(nested.inputs, [inner_features, *inner_outputs],
                        name=f"{nested.name}_with_features")
    # Re-run the outer graph (what Functional._run_internal_graph does), with ``inner`` in place
    # of the nested model so that its feature map comes out too. Layers are reused, not copied.
    counts = model._tensor_usage_count
    tensors = {str(id(x)): [x] * counts[str(id(x))] for x in model.inputs}
    first_output_id = str(id(model.outputs[0]))
    features, head_in = None, None
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            if node.layer is nested:
                outs = inner(*args, **kwargs)
                if features is not None:
                    raise ValueError(f"{nested.name!r} is called more than once in "
                                     f"{model.name!r}; pass a layer outside it")
                features, outs = outs[0], outs[1:]
                outs = outs[0] if len(outs) == 1 else outs
            else:
                outs = node.layer(*args, **kwargs)
            if first_output_id in node.flat_output_ids and node.layer is not nested:
                head_in = args[0]
            for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(outs)):
                tensors[x_id] = [y] * counts[x_id]
    outputs = [tensors[str(id(x))][-1] for x in model.outputs]
    return features, outputs, head_in


class _Logits(keras.layers.Layer):
    """Class scores before the output activation, as (N, K) logits whose softmax is the model's
    probabilities. A sigmoid unit z becomes [-z/2, z/2]: softmax of that is [1 - p, p], and class 0
    gets the score -z/2, so any class can be explained. Shares the output layer's weights."""

    def __init__(self, head=None, kind: str = "sigmoid", from_probabilities: bool = False, **kw):
        super().__init__(**kw)
        self.head = head
        self.kind = kind
        self.from_probabilities = from_probabilities

    def call(self, x):
        if self.from_probabilities:
            p = tf.clip_by_value(x, 1e-7, 1 - 1e-7)
            z = tf.math.log(p) - tf.math.log(1 - p) if self.kind == "sigmoid" else tf.math.log(p)
        elif isinstance(self.head, keras.layers.Dense):
            z = tf.matmul(x, self.head.kernel)
            if self.head.use_bias:
                z = z + self.head.bias
        else:
            z = x  # the input of a final Activation layer is already the logit
        return tf.concat([-z / 2, z / 2], axis=-1) if self.kind == "sigmoid" else z


def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


class _Compiled(keras.layers.Layer):
    """Runs a model as a compiled ``tf.function`` whose gradient is computed inside another
    compiled function (forward again + backward in one graph).

    tf-keras-vis differentiates with an eager ``GradientTape``; on TF 2.21 with oneDNN, eager
    backprop through ResNet-18 aborts the process (heap corruption), also when the tape only
    sees a compiled forward pass. A gradient taken inside one ``tf.function`` is safe, so the
    layer hands the tape that instead (no gradients for the weights: explanations need none)."""

    def __init__(self, model: keras.Model, **kw):
        super().__init__(trainable=False, **kw)
        self.inner = model
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        out_spec = tf.TensorSpec((None, *model.output_shape[1:]), tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)

        @tf.function(input_signature=[spec, out_spec])
        def vjp(x, dy):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                y = model(x, training=False)
            return tape.gradient(y, x, output_gradients=dy)

        @tf.custom_gradient
        def run(x):
            def grad(dy, variables=None):
                return vjp(x, dy), [None] * len(variables or [])

            return self._forward(x), grad

        self._run = run

    def call(self, x):
        return self._run(tf.cast(x, tf.float32))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(self.inner.output_shape)


@dataclass
class CamGraph:
    """Symbolic graph for CAM methods, sharing the model's weights.

    inputs: the model's inputs; features: the target layer's activations (N, h, w, c);
    feature_layer: an identity layer whose output is ``features`` (tf-keras-vis takes it as the
    penultimate layer); logits: (N, K) class scores whose softmax is the model's probabilities.
    """

    inputs: list
    features: object
    feature_layer: keras.layers.Layer
    logits: object
    layer_path: tuple[str, ...]
    num_classes: int
    from_probabilities: bool
    raw_features: object = None  # the layer's own output tensor, before the identity

    def grad_model(self) -> keras.Model:
        """images -> [features, logits]."""
        return keras.Model(self.inputs, [self.features, self.logits], name="tfxai_gradcam")

    def vis_model(self) -> tuple[keras.Model, keras.layers.Layer]:
        """(images -> logits, penultimate layer) for tf-keras-vis, which takes the identity
        layer on the feature map as its penultimate layer (``seek_penultimate_conv_layer=False``).

        When the graph splits at the feature map (flat models: everything after the layer
        depends on it alone), the two halves run as compiled functions (see ``_Compiled``);
        otherwise (a layer inside a nested backbone) the graph runs eagerly as built."""
        try:
            head = keras.Model(self.raw_features, self.logits, name="tfxai_head")
        except ValueError:  # "Graph disconnected": the rest of the model needs more than it
            log.debug("feature map of %s does not split the graph; tf-keras-vis runs eagerly",
                      "/".join(self.layer_path))
            return keras.Model(self.inputs, self.logits, name="tfxai_logits"), self.feature_layer
        body = keras.Model(self.inputs, self.raw_features, name="tfxai_body")
        image = keras.Input(self.inputs[0].shape[1:], name="image")
        feature_layer = keras.layers.Activation("linear", name="tfxai_vis_features")
        features = feature_layer(_Compiled(body, name="tfxai_body_fn")(image))
        logits = _Compiled(head, name="tfxai_head_fn")(features)
        return keras.Model(image, logits, name="tfxai_logits"), feature_layer


def build_cam_graph(model: keras.Model, layer: str | None = None) -> CamGraph:
    """Wire ``model`` for CAM methods: its target conv layer (found or named, see
    :func:`find_target_layer`) and its pre-activation class scores. The model is not modified
    or copied; the returned graph shares its layers and weights."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"CAM methods need a single-input, single-output model; {model.name!r} "
                         f"has {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    path = find_target_layer(model, layer)
    features, outputs, head_in = _split(model, path)
    units = int(model.output_shape[-1])
    kind = "sigmoid" if units == 1 else "softmax"
    out_layer = model.outputs[0]._keras_history.layer
    act = _activation_name(out_layer)
    if head_in is not None and act in ("sigmoid", "softmax") and (
            isinstance(out_layer, (keras.layers.Dense, keras.layers.Activation))):
        logits = _Logits(out_layer, kind, name="tfxai_logits")(head_in)
        from_probs = False
    else:
        log.debug("output layer %r (%s) has no separable activation: scores from log-probabilities",
                  out_layer.name, type(out_layer).__name__)
        logits = _Logits(None, kind, from_probabilities=True, name="tfxai_logits")(outputs[0])
        from_probs = True
    feature_layer = keras.layers.Activation("linear", name="tfxai_cam_features")
    return CamGraph(list(model.inputs), feature_layer(features), feature_layer, logits, path,
                    num_classes_of(units), from_probs, raw_features=features)


class GradCAM(HeatmapExplainer):
    """Grad-CAM for a tf_keras model taking raw pixels (N, H, W, C).

    ``GradCAM(model, layer=None)`` finds the last conv layer (also inside a nested backbone) or
    uses the named one. ``heatmaps(images, targets)`` -> (float32 (N, H, W) in [0, 1],
    probabilities (N, K), targets (N,)); ``explain(images, targets)`` -> list of
    :class:`Explanation`. targets: class indices (default: the predicted class, argmax).
    Works for a (N, 1) sigmoid head (class 0 explained with the negated logit) and softmax heads.
    """

    method = "gradcam"

    def __init__(self, model: keras.Model, layer: str | None = None, batch_size: int = 32):
        super().__init__(batch_size)
        self.model = model
        self.graph = build_cam_graph(model, layer)
        self.layer_path = self.graph.layer_path
        self.input_shape = tuple(model.input_shape[1:])
        self.num_classes = self.graph.num_classes
        grad_model = self.graph.grad_model()
        height, width = model.input_shape[1:3]

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)

        @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int64)])
        def step(x, targets):
            with tf.GradientTape() as tape:
                feats, logits = grad_model(x, training=False)
                # A negative target means "the predicted class".
                targets = tf.where(targets < 0, tf.argmax(logits, axis=-1), targets)
                score = tf.gather(logits, targets, axis=1, batch_dims=1)
            # Images are independent in inference mode, so one gradient of the summed scores
            # gives every image's own gradient: the whole batch in one backward pass.
            grads = tape.gradient(score, feats)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1, keepdims=True))
            cam = tf.image.resize(cam, (height, width), method="bilinear")[..., 0]
            return cam, tf.nn.softmax(logits, axis=-1), targets

        self._step = step

    @property
    def layer_name(self) -> str:
        return "/".join(self.layer_path)

    @property
    def params(self) -> dict:
        return {"layer": self.layer_name}

    def _heatmaps(self, x: np.ndarray, t: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cams, probs, used = [], [], []
        if t is None:
            t = np.full(len(x), -1, np.int64)
        for i in range(0, len(x), self.batch_size):
            cam, p, tt = self._step(tf.constant(x[i:i + self.batch_size]),
                                    tf.constant(t[i:i + self.batch_size]))
            cams.append(cam.numpy())
            probs.append(p.numpy())
            used.append(tt.numpy())
        return (normalize_heatmap(np.concatenate(cams)), np.concatenate(probs).astype(np.float32),
                np.concatenate(used).astype(np.int64))
