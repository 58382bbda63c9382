"""Grad-CAM (from scratch) and the tf-keras-vis methods: shapes, known answers, nested backbones."""
from __future__ import annotations

import numpy as np
import pytest

from explain_helpers import left_mass

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_cnn():
    from tfxai._keras import keras
    from tfxai.models import build_model

    keras.utils.set_random_seed(1)
    return build_model("custom_cnn", (32, 32, 1), width=8, depth=3)


def _nested_mobilenet(num_classes: int = 3, size: int = 32):
    """MobileNetV2 as one layer of a functional model: the classic Grad-CAM failure."""
    from tfxai._keras import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                              weights=None, alpha=0.35)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    units, act = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    outputs = keras.layers.Dense(units, activation=act)(x)
    return keras.Model(inputs, outputs), backbone


def _images(n, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype(np.float32)


def test_gradcam_heatmaps_are_float32_in_unit_range_without_nan(tiny_cnn):
    from tfxai.explain import GradCAM

    heat, probs, targets = GradCAM(tiny_cnn).heatmaps(_images(5))
    assert heat.shape == (5, 32, 32) and heat.dtype == np.float32
    assert not np.isnan(heat).any()
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert np.allclose(heat.max(axis=(1, 2)), 1.0, atol=1e-6) or (heat.max(axis=(1, 2)) == 0).any()
    np.testing.assert_allclose(probs[:, 1], tiny_cnn(_images(5)).numpy()[:, 0], atol=1e-5)
    np.testing.assert_array_equal(targets, (probs[:, 1] > 0.5).astype(int))


def test_gradcam_puts_mass_on_the_half_the_model_sees(left_model):
    from tfxai.explain import GradCAM

    model, x, y = left_model
    assert (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int).tolist() == y.tolist()
    heat, _, _ = GradCAM(model).heatmaps(x[y == 1], targets=1)
    assert left_mass(heat).mean() > 0.9
    assert left_mass(heat).min() > 0.6


@pytest.mark.parametrize("method", ["gradcam++", "faster-scorecam", "smoothgrad"])
def test_camvis_methods_put_mass_on_the_half_the_model_sees(left_model, method):
    from tfxai.explain import make_explainer

    model, x, y = left_model
    explanations = make_explainer(method, model, max_n=8).explain(x[y == 1][:6], targets=1)
    heat = np.stack([e.heatmap for e in explanations])
    assert heat.dtype == np.float32 and heat.shape == (6, 32, 32)
    assert heat.min() >= 0 and heat.max() <= 1 and not np.isnan(heat).any()
    assert left_mass(heat).mean() > 0.65
    assert all(e.method == method and e.target == 1 and 0.5 < e.probability <= 1 for e in explanations)


def test_gradcam_finds_conv_layer_inside_nested_backbone():
    from tfxai.explain import GradCAM, find_target_layer

    model, backbone = _nested_mobilenet()
    path = find_target_layer(model)
    assert path == (backbone.name, "out_relu")
    cam = GradCAM(model)
    x = _images(3)
    heat, probs, targets = cam.heatmaps(x, targets=[0, 1, 2])
    assert heat.shape == (3, 32, 32) and not np.isnan(heat).any()
    np.testing.assert_allclose(probs, model(x).numpy(), atol=1e-5)
    assert targets.tolist() == [0, 1, 2]
    # The feature map is really the backbone's: its gradient path reaches the input.
    assert cam.layer_name == f"{backbone.name}/out_relu"


def test_camvis_method_runs_on_nested_backbone_by_layer_name():
    from tfxai.explain import make_explainer

    model, backbone = _nested_mobilenet(num_classes=2)
    explainer = make_explainer("gradcam++", model, layer="block_16_project")
    assert explainer.layer_path == (backbone.name, "block_16_project")
    (exp,) = explainer.explain(_images(1), targets=0)
    assert exp.heatmap.shape == (32, 32) and exp.target == 0
    np.testing.assert_allclose(exp.probability, 1 - float(model(_images(1)).numpy()[0, 0]),
                               atol=1e-5)


def test_gradcam_explains_any_class_with_sigmoid_head(left_model):
    from tfxai.explain import GradCAM

    model, x, y = left_model
    cam = GradCAM(model)
    pos = x[y == 1][:4]
    h1, p, t1 = cam.heatmaps(pos, targets=1)
    h0, _, t0 = cam.heatmaps(pos, targets=0)
    assert t1.tolist() == [1] * 4 and t0.tolist() == [0] * 4
    # Evidence for and against the same class are different maps (the logit is negated).
    assert np.abs(h1 - h0).mean() > 0.1


def test_gradcam_explains_a_batch_in_one_call_like_one_by_one(tiny_cnn):
    from tfxai.explain import GradCAM

    cam = GradCAM(tiny_cnn, batch_size=32)
    x = _images(32, seed=3)
    batch, _, _ = cam.heatmaps(x, targets=1)
    single = np.concatenate([cam.heatmaps(x[i:i + 1], targets=1)[0] for i in range(0, 32, 8)])
    np.testing.assert_allclose(batch[::8], single, atol=1e-4)


def test_gradcam_rejects_wrong_shapes_and_targets(tiny_cnn):
    from tfxai.explain import GradCAM

    cam = GradCAM(tiny_cnn)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 1\)"):
        cam.heatmaps(np.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match="targets"):
        cam.heatmaps(_images(2), targets=[0, 5])
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        GradCAM(tiny_cnn, layer="nope")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad", "lime"])
def test_every_method_shares_one_base_with_its_input_checks_and_target_broadcasting(tiny_cnn, method):
    from tfxai.explain import Explainer, make_explainer

    explainer = make_explainer(method, tiny_cnn, num_samples=20, n_segments=8) if method == "lime" else (
        make_explainer(method, tiny_cnn))
    assert isinstance(explainer, Explainer)
    nan = _images(2)
    nan[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        explainer.explain(nan)
    with pytest.raises(ValueError, match=r"targets must be 2 class indices"):
        explainer.explain(_images(2), targets=[0, 1, 1])
    if method != "lime":  # LIME takes any image size: it learns the model only through predictions
        with pytest.raises(ValueError, match=r"\(N, 32, 32, 1\)"):
            explainer.explain(np.zeros((2, 28, 28, 1)))
    # One target for every image, or one image without its batch axis: broadcast by the base.
    one, both = explainer.explain(_images(2), targets=1)
    assert (one.target, both.target) == (1, 1)
    (single,) = explainer.explain(_images(1)[0], targets=[0])
    assert single.target == 0 and single.heatmap.shape == (32, 32)


@pytest.mark.parametrize("method", ["gradcam++", "smoothgrad"])
def test_camvis_gradients_survive_resnet18(method):
    """Eager backprop through ResNet-18 aborts TF 2.21 (oneDNN); the compiled path must not."""
    from tfxai.explain import make_explainer
    from tfxai.models import build_model

    model = build_model("resnet18", (32, 32, 1), 3, width=8)
    options = {"smooth_samples": 3} if method == "smoothgrad" else {}
    (exp,) = make_explainer(method, model, **options).explain(_images(1), targets=2)
    assert exp.heatmap.shape == (32, 32) and not np.isnan(exp.heatmap).any()
    assert exp.probability == pytest.approx(float(model(_images(1)).numpy()[0, 2]), abs=1e-5)
