"""In-model preprocessing layers (tfxai.preprocessing): what they do to intensities, that models
carrying them save, load safely, explain and convert to TFLite float32 and int8."""
import numpy as np
import pytest

from tfxai import preprocessing as pp
from tfxai._keras import keras
from tfxai.synthetic import make_synthetic_xrays


@pytest.fixture(scope="module")
def xrays():
    return make_synthetic_xrays(12, 64, seed=2).images[..., None].astype(np.float32)


def _apply(name, x):
    inp = keras.Input(x.shape[1:])
    return keras.Model(inp, pp.apply_preprocessing(inp, name))(x).numpy()


@pytest.mark.parametrize("name", pp.PREPROCESSING[1:])
def test_output_is_in_0_255_with_the_input_shape(xrays, name):
    y = _apply(name, xrays)
    assert y.shape == xrays.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 255.0


def test_standardize_gives_every_image_the_same_mean_and_spread(xrays):
    y = _apply("standardize", xrays * 0.5 + 40)  # a darker, flatter acquisition
    assert np.allclose(y.mean(axis=(1, 2, 3)), 128, atol=3)
    assert np.allclose(y.std(axis=(1, 2, 3)), 48, atol=4)


@pytest.mark.parametrize("name,tolerance", [("equalize", 6.0), ("local_contrast", 8.0), ("standardize", 12.0)])
def test_preprocessing_undoes_a_global_contrast_and_gamma_change(xrays, name, tolerance):
    changed = 255.0 * (xrays / 255.0) ** 1.5 * 0.8 + 10  # darker gamma, less contrast, a lift
    raw_gap = np.abs(changed - xrays).mean()
    gap = np.abs(_apply(name, changed) - _apply(name, xrays)).mean()
    assert gap < tolerance < raw_gap, (gap, raw_gap)


def test_equalize_flattens_the_histogram(xrays):
    y = _apply("equalize", xrays)
    hist = np.histogram(y, bins=8, range=(0, 256))[0] / y.size
    assert hist.max() < 0.2 and hist.min() > 0.06  # close to 1/8 in every eighth of the range


def test_three_channel_input_gives_the_grey_result_on_every_channel(xrays):
    rgb = np.repeat(xrays, 3, axis=3)
    y = _apply("equalize", rgb)
    assert np.allclose(y[..., 0], y[..., 2]) and np.allclose(y[..., :1], _apply("equalize", xrays), atol=1e-3)


def test_unknown_preprocessing_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="clahe"):
        pp.preprocessing_layers("clahe")
    with pytest.raises(ValueError, match="bins"):
        pp.HistogramEqualize(bins=2)
    with pytest.raises(ValueError, match="window"):
        pp.LocalContrastNormalize(window=0)


@pytest.mark.parametrize("model_type,options", [
    ("custom_cnn", {"width": 8, "depth": 2}),
    pytest.param("resnet18", {"width": 8}, marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", {"alpha": 0.35}, marks=pytest.mark.slow),  # ~40 s to save and reload
])
def test_models_with_preprocessing_reload_with_safe_mode_and_predict_the_same(tmp_path, xrays, model_type,
                                                                              options):
    from tfxai.io.model_files import load_model, save_model
    from tfxai.models import build_model

    model = build_model(model_type, (64, 64, 1), 2, preprocessing="equalize_local", **options)
    path = str(tmp_path / "m.keras")
    save_model(model, path)
    loaded = load_model(path)  # safe_mode=True
    assert loaded.get_layer("equalize").get_config()["bins"] == 32
    np.testing.assert_allclose(loaded.predict(xrays, verbose=0), model.predict(xrays, verbose=0), atol=1e-5)


def test_gradcam_explains_the_conv_features_not_the_preprocessing(xrays):
    from tfxai.explain import GradCAM
    from tfxai.models import build_model

    model = build_model("custom_cnn", (64, 64, 1), 2, width=8, depth=2, preprocessing="equalize")
    cam = GradCAM(model)
    heat, probs, _ = cam.heatmaps(xrays[:4])
    assert cam.layer_name == "block2b_relu"
    assert heat.shape == (4, 64, 64) and np.isfinite(heat).all() and heat.max() <= 1.0


def _tflite_outputs(model, images, quantization):
    """The model converted to TFLite (``quantization``) run on uint8 ``images``: float32 outputs;
    asserts that the file holds builtin operators only."""
    from ai_edge_litert.interpreter import Interpreter

    from tfxai.compress.tflite import Calibration, convert_tflite

    it = Interpreter(model_content=convert_tflite(model, quantization, Calibration(images)))
    it.allocate_tensors()
    (i,), (o,) = it.get_input_details(), it.get_output_details()
    ops = {d["op_name"] for d in it._get_ops_details()}
    assert not any("FLEX" in op.upper() or "CUSTOM" in op.upper() for op in ops), ops  # builtins only
    out = []
    for im in images:
        it.set_tensor(i["index"], im[None].astype(i["dtype"]))
        it.invoke()
        v = it.get_tensor(o["index"]).astype(np.float32)
        if o["dtype"] != np.float32:
            scale, zero = o["quantization"]
            v = (v - zero) * scale
        out.append(v[0])
    return np.stack(out)


@pytest.mark.parametrize("name", pp.PREPROCESSING[1:4])
def test_preprocessing_converts_to_tflite_float32_exactly_and_int8_within_3_grey_levels(xrays, name):
    inp = keras.Input((64, 64, 1))
    model = keras.Model(inp, pp.apply_preprocessing(inp, name))
    ref = model.predict(xrays, verbose=0)
    for quantization, tolerance in (("float32", 1e-3), ("int8", 3.0)):
        err = np.abs(_tflite_outputs(model, xrays.astype(np.uint8), quantization) - ref).mean()
        assert err < tolerance, (quantization, err)


def test_lung_mask_fades_borders_corners_and_abdomen_to_the_mean_and_keeps_the_chest(xrays):
    inp = keras.Input((64, 64, 1))
    y = keras.Model(inp, pp.apply_preprocessing(inp, "none", "mask"))(xrays).numpy()
    mean = xrays.mean(axis=(1, 2, 3))
    window = pp.LungFocus("mask").window(64, 64)
    inside, outside = window > 0.99, window < 0.01
    assert outside[0, 0] and outside[-1, -1] and outside[-1, 32] and inside[32, 32]  # corners, abdomen; centre
    np.testing.assert_allclose(y[:, inside], xrays[:, inside], atol=0.03 * 255)
    np.testing.assert_allclose(y[:, outside, 0], np.broadcast_to(mean[:, None], y[:, outside, 0].shape), atol=0.03 * 255)
    # Where the median lung box of the Kermany copies sits (top, costophrenic angles) stays untouched.
    for y, x in ((0.19, 0.5), (0.84, 0.14), (0.84, 0.85)):
        assert inside[int(y * 64), int(x * 64)], (y, x)


def test_lung_crop_fills_the_input_with_the_lung_box(xrays):
    inp = keras.Input((64, 64, 1))
    y = keras.Model(inp, pp.apply_preprocessing(inp, "none", "crop"))(xrays).numpy()
    top, bottom, left, right = pp.FOCUS_BOX
    box = xrays[:, round(top * 64):round(bottom * 64), round(left * 64):round(right * 64)]
    import cv2

    want = np.stack([cv2.resize(b[..., 0], (64, 64), interpolation=cv2.INTER_LINEAR) for b in box])[..., None]
    assert np.abs(y - want).mean() < 1.0 and y.shape == xrays.shape


@pytest.mark.parametrize("focus", ["mask", "crop"])
def test_a_model_with_lung_focus_saves_loads_and_converts_to_tflite_builtins(xrays, focus, tmp_path):
    from tfxai.io.model_files import load_model, save_model
    from tfxai.models import build_model

    from tfxai.data import AugmentConfig
    from tfxai.training import FitSettings, fit_arrays

    model = build_model("custom_cnn", (64, 64, 1), 2, width=8, depth=2, preprocessing="equalize", focus=focus)
    assert model.get_layer("lung_focus").mode == focus
    # Training feeds augmented batches whose spatial shape is not static: the layer keeps the model's own size.
    history = fit_arrays(model, xrays.astype(np.uint8), np.arange(12) % 2, 2,
                         FitSettings(1, 1e-3, 4, augment=AugmentConfig(aspect=0.2)), verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    save_model(model, str(tmp_path / "m.keras"))
    loaded = load_model(str(tmp_path / "m.keras"))
    ref = model.predict(xrays, verbose=0)
    np.testing.assert_allclose(loaded.predict(xrays, verbose=0), ref, atol=1e-6)
    assert np.abs(_tflite_outputs(model, xrays.astype(np.uint8), "float32") - ref).max() < 1e-4
    assert np.abs(_tflite_outputs(model, xrays.astype(np.uint8), "int8") - ref).max() < 0.05


def test_a_model_option_naming_an_unknown_preprocessing_is_refused_with_the_value():
    from tfxai.model_specs import get_spec

    for model_type in ("custom_cnn", "resnet18", "mobilenet_v2"):
        with pytest.raises(ValueError, match="'clahe'"):
            get_spec(model_type).check_options({"preprocessing": "clahe"})
