"""The Keras networks behind the model registry: ``build_model(name, ...)`` builds any type
listed by :func:`tfxai.model_specs.list_models` (whose specs say what each accepts).

Every model takes raw pixels (float32 in [0, 255], shape (H, W, C) with C = 1 or 3): rescaling lives
inside the model, so a saved model and its TFLite export need no outside preprocessing. Binary
problems get one sigmoid unit (probability of the positive class, index 1); more classes get softmax.
"""
from __future__ import annotations

import copy
import logging
import os

from ._keras import keras
from .errors import MissingDownloadError, ModelFileError
from .model_specs import get_spec
from .preprocessing import apply_preprocessing

log = logging.getLogger(__name__)
layers = keras.layers
# BatchNorm moving averages with Keras' default momentum 0.99 need thousands of steps to settle; on
# the small datasets and short CPU runs tfxai is for, inference then collapses to one class. 0.9
# (PyTorch's 0.1) settles within a few hundred steps.
BN_MOMENTUM = 0.9


def _bn(name: str):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, gamma_initializer="ones",
                                     beta_initializer="zeros", name=name)


# Where Keras downloads MobileNetV2's ImageNet weights; {file}: the weights file's name.
MOBILENET_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{file}"


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 8:
        raise ValueError(
            f"input_shape must be (height, width, channels) with channels 1 or 3 and sides >= 8, "
            f"got {input_shape!r}"
        )
    return shape


def _head(x, num_classes: int, dropout: float, name: str = "predictions"):
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    return layers.Dense(
        units, activation=activation, kernel_initializer="glorot_uniform", name=name
    )(x)


def build_model(
    name: str,
    input_shape: tuple[int, int, int] = (224, 224, 1),
    num_classes: int = 2,
    weights: str | None = None,
    **options,
) -> keras.Model:
    """Build a registered model type.

    input_shape: (H, W, C), C in {1, 3}; the model takes raw pixels in [0, 255].
    num_classes: 2 gives a (N, 1) sigmoid output (probability of class 1); more give (N, K) softmax.
    weights: None (random init), "imagenet" (MobileNetV2 only: Keras' cached file, or a download),
    or a path to a weights/model file to load.
    """
    spec = get_spec(name)
    shape = _check_input_shape(input_shape)
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    if weights == "imagenet" and not spec.supports_imagenet:
        raise ValueError(f"model type {name!r} has no ImageNet weights; use mobilenet_v2 or weights=None")
    spec.check_options(options)
    model = spec.build_function()(shape, int(num_classes), weights=weights, **options)
    if weights not in (None, "imagenet"):
        load_weights_file(model, weights)
    return model


def load_weights_file(model: keras.Model, path: str) -> None:
    if not os.path.exists(path):
        raise ModelFileError(f"weights file {path!r} does not exist")
    try:
        if str(path).endswith(".keras"):
            from .io.model_files import load_model

            model.set_weights(load_model(path).get_weights())
        else:
            model.load_weights(path)
    except (ValueError, OSError) as err:
        raise ModelFileError(f"could not load weights from {path!r} into {model.name}: {err}") from err


# ----------------------------------------------------------------------------- custom CNN
def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = _bn(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_custom_cnn(shape, num_classes, weights=None, width: int = 32, depth: int = 4,
                      dropout: float = 0.3, preprocessing: str = "none", focus: str = "none") -> keras.Model:
    if not (1 <= int(depth) <= 6):
        raise ValueError(f"custom_cnn depth must be in [1, 6], got {depth!r}")
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(apply_preprocessing(inputs, preprocessing, focus))
    filters = int(width)
    for block in range(int(depth)):
        x = _conv_bn_relu(x, filters, f"block{block + 1}a")
        last = f"block{block + 1}b"
        x = _conv_bn_relu(x, filters, last)
        if block < int(depth) - 1:
            x = layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
            x = layers.SpatialDropout2D(dropout / 3, name=f"block{block + 1}_dropout")(x)
            filters = min(filters * 2, 512)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(max(filters // 2, 16), activation="relu", kernel_initializer="glorot_uniform", name="fc")(x)
    outputs = _head(x, num_classes, dropout)
    model = keras.Model(inputs, outputs, name="custom_cnn")
    return model


# ----------------------------------------------------------------------------- ResNet18
def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, kernel_initializer="he_normal", name=f"{name}_down_conv")(x)
        shortcut = _bn(f"{name}_down_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet18(shape, num_classes, weights=None, width: int = 64, dropout: float = 0.2,
                    preprocessing: str = "none", focus: str = "none") -> keras.Model:
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(apply_preprocessing(inputs, preprocessing, focus))
    # Small inputs (PneumoniaMNIST 28 px, CIFAR 32 px) lose everything to the 7x7/2 stem + pool.
    small = min(shape[:2]) < 96
    if small:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv")(x)
    else:
        x = layers.Conv2D(width, 7, strides=2, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if not small:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (blocks, mult) in enumerate(zip((2, 2, 2, 2), (1, 2, 4, 8))):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = _basic_block(x, width * mult, stride, f"stage{stage + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = _head(x, num_classes, dropout)
    model = keras.Model(inputs, outputs, name="resnet18")
    return model


# ----------------------------------------------------------------------------- MobileNetV2
def _mobilenet_weights_file(alpha: float, rows: int) -> str:
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def build_mobilenet_v2(shape, num_classes, weights=None, alpha: float = 1.0, dropout: float = 0.2,
                        trainable_backbone_layers: int | None = None, padding: str = "same",
                        preprocessing: str = "none", focus: str = "none") -> keras.Model:
    if padding not in ("same", "symmetric"):
        raise ValueError(f"mobilenet_v2 padding must be 'same' (Keras) or 'symmetric' (XNNPack sparse "
                         f"inference), got {padding!r}")
    inputs = keras.Input(shape, name="image")
    x = apply_preprocessing(inputs, preprocessing, focus)
    if shape[2] == 1:
        # ImageNet filters expect three channels; grey X-rays are repeated rather than re-learned.
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    rows = shape[0] if shape[0] in (96, 128, 160, 192, 224) else 224
    if weights == "imagenet":
        _ensure_imagenet_file(alpha, rows)
    # Passing input_tensor builds the backbone's layers into this graph (a flat model): tfmot and
    # Grad-CAM then reach every layer directly instead of through a nested Model.
    backbone = keras.applications.MobileNetV2(
        input_shape=(shape[0], shape[1], 3), input_tensor=x, include_top=False, alpha=alpha,
        weights="imagenet" if weights == "imagenet" else None,
    )
    if weights != "imagenet":
        # Keras' MobileNetV2 uses BatchNorm momentum 0.999: trained from scratch on a few thousand
        # X-rays, its moving averages never settle and validation sits at chance (measured here).
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = BN_MOMENTUM
    x = layers.GlobalAveragePooling2D(name="gap")(backbone.output)
    outputs = _head(x, num_classes, dropout)
    model = keras.Model(inputs, outputs, name="mobilenet_v2")
    if padding == "symmetric":  # stride-2 layers pad 1 on each side: see tfxai.compress.sparse
        model = symmetric_stride2_padding(model)
    if weights == "imagenet":
        set_backbone_trainable(model, trainable_layers=trainable_backbone_layers or 0)
    return model


def _stride2_3x3(cfg: dict) -> bool:
    return (tuple(cfg.get("strides", (1, 1))) == (2, 2) and tuple(cfg.get("kernel_size", (1, 1))) == (3, 3)
            and tuple(cfg.get("dilation_rate", (1, 1))) == (1, 1))


def symmetric_stride2_padding(model):
    """A copy of ``model`` in which every 3x3 stride-2 (depthwise) convolution pads 1 pixel on
    each side (what XNNPack's sparse inference and tfmot's ``PruneForLatencyOnXNNPack`` require)
    instead of TensorFlow's "same" (0 before, 1 after on even sizes).

    A ``padding="same"`` layer becomes ``ZeroPadding2D(1)`` + ``padding="valid"``; a
    ``ZeroPadding2D`` feeding a ``"valid"`` one is set to ``((1, 1), (1, 1))``. Output shapes are
    unchanged for every input size; weights are copied by layer name. Returns the model itself
    when nothing needs to change. Functional models only.
    """
    config = model.get_config()
    if "layers" not in config or "input_layers" not in config:
        raise ValueError(f"symmetric_stride2_padding needs a functional Keras model, got {type(model).__name__}")
    layers = copy.deepcopy(config["layers"])
    by_name = {layer["name"]: layer for layer in layers}
    out, changed = [], 0
    for layer in layers:
        cls, cfg = layer["class_name"], layer["config"]
        if cls in ("Conv2D", "DepthwiseConv2D") and _stride2_3x3(cfg):
            nodes = layer["inbound_nodes"]
            if cfg.get("padding") == "same":
                if len(nodes) != 1 or len(nodes[0]) != 1:
                    raise ValueError(f"layer {layer['name']!r} is called more than once; cannot insert padding")
                pad_name = f"{layer['name']}_sympad"
                out.append({"class_name": "ZeroPadding2D", "name": pad_name,
                            "config": {"name": pad_name, "trainable": False, "dtype": cfg.get("dtype", "float32"),
                                       "padding": ((1, 1), (1, 1)), "data_format": "channels_last"},
                            "inbound_nodes": copy.deepcopy(nodes)})
                nodes[0][0][0] = pad_name
                cfg["padding"] = "valid"
                changed += 1
            else:
                producer = by_name.get(nodes[0][0][0]) if nodes and nodes[0] else None
                if producer is not None and producer["class_name"] == "ZeroPadding2D":
                    pad = tuple(tuple(p) for p in producer["config"]["padding"])
                    if pad != ((1, 1), (1, 1)):
                        producer["config"]["padding"] = ((1, 1), (1, 1))
                        changed += 1
        out.append(layer)
    if not changed:
        return model
    config["layers"] = out
    rebuilt = keras.Model.from_config(config)
    for layer in model.layers:
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    for a, b in zip(model.outputs, rebuilt.outputs):
        if tuple(a.shape[1:]) != tuple(b.shape[1:]):
            # Only for architectures unlike tfxai's (the rewrite keeps shapes for every input size of these).
            raise ValueError(f"cannot give {model.name!r} symmetric stride-2 padding: the rewrite changed an "
                             f"output shape from {tuple(a.shape)} to {tuple(b.shape)}")
    log.info("rebuilt %s with symmetric padding on %d stride-2 layer(s)", model.name, changed)
    return rebuilt


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers between the in-model rescaling and the global pooling (MobileNetV2's backbone)."""
    names = [layer.name for layer in model.layers]
    start = names.index("rescale") + 1 if "rescale" in names else 1
    end = names.index("gap") if "gap" in names else len(names)
    return model.layers[start:end]


def set_backbone_trainable(model: keras.Model, trainable_layers: int) -> int:
    """Freeze the backbone except its last ``trainable_layers`` layers (BatchNorm stays frozen,
    the usual fine-tuning advice). Returns how many backbone layers are trainable."""
    body = backbone_layers(model)
    n = max(0, min(int(trainable_layers), len(body)))
    for i, layer in enumerate(body):
        trainable = i >= len(body) - n
        layer.trainable = trainable and not isinstance(layer, layers.BatchNormalization)
    return n


def _ensure_imagenet_file(alpha: float, rows: int) -> None:
    fname = _mobilenet_weights_file(alpha, rows)
    cache_dir = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
    path = os.path.join(cache_dir, fname)
    if os.path.exists(path):
        return
    try:
        keras.utils.get_file(fname, MOBILENET_WEIGHTS_URL.format(file=fname), cache_subdir="models")
    except Exception as err:  # network errors come in many types; the message below is what helps
        raise MissingDownloadError(
            f"MobileNetV2 ImageNet weights are not on this machine and could not be downloaded "
            f"({type(err).__name__}). Put the file {fname} into {cache_dir}/ (download it from "
            f"{MOBILENET_WEIGHTS_URL.format(file=fname)} on a machine with internet), "
            f"or train without --pretrained."
        ) from err
