
import numpy as np
import pytest

from tfxai import model_specs, models
from tfxai._keras import keras
from tfxai.errors import MissingDownloadError, ModelFileError
from tfxai.io.model_files import load_model, save_model


def test_registry_lists_the_three_model_types():
    assert model_specs.list_models() == ["custom_cnn", "mobilenet_v2", "resnet18"]
    with pytest.raises(ValueError, match="unknown model type 'vgg'"):
        models.build_model("vgg")


@pytest.mark.parametrize("name", ["custom_cnn", "resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("shape,classes,out", [((64, 64, 1), 2, 1), ((32, 32, 3), 3, 3)])
def test_models_take_raw_pixels_and_give_probabilities(name, shape, classes, out):
    m = models.build_model(name, shape, classes)
    assert m.input_shape == (None, *shape) and m.output_shape == (None, out)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype(np.float32)
    y = m(x, training=False).numpy()
    assert np.all((y >= 0) & (y <= 1))
    if classes > 2:
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    from tfxai.explain.gradcam import find_target_layer

    conv = m.get_layer(find_target_layer(m)[-1])
    assert len(conv.output_shape) == 4 and conv.output_shape[1] >= 1


def test_resnet18_has_the_standard_basic_block_structure():
    m = models.build_model("resnet18", (224, 224, 3), 2)
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    # 1 stem + 8 blocks x 2 convs + 3 downsampling 1x1 convs = 20 conv layers
    assert len(convs) == 20
    assert m.get_layer("stage4_block2_out").output_shape == (None, 7, 7, 512)
    assert abs(m.count_params() - 11.18e6) < 0.05e6  # ResNet-18 without the 1000-way head


def test_custom_cnn_initialisers():
    m = models.build_model("custom_cnn", (32, 32, 1), 2, width=8, depth=2)
    conv = m.get_layer("block1a_conv")
    bn = m.get_layer("block1a_bn")
    assert type(conv.kernel_initializer).__name__ == "HeNormal"
    assert type(m.get_layer("predictions").kernel_initializer).__name__ == "GlorotUniform"
    np.testing.assert_array_equal(bn.gamma.numpy(), 1.0)
    np.testing.assert_array_equal(bn.beta.numpy(), 0.0)
    assert any(isinstance(l, keras.layers.Dropout) for l in m.layers)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 2), (4, 4, 1)])
def test_bad_input_shape_is_named(shape):
    with pytest.raises(ValueError, match=r"input_shape must be .* got"):
        models.build_model("custom_cnn", shape)


def test_imagenet_weights_offline_error_names_the_file_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(MissingDownloadError) as err:
        models.build_model("mobilenet_v2", (224, 224, 1), 2, weights="imagenet")
    msg = str(err.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in msg
    assert str(tmp_path / "models") in msg
    with pytest.raises(ValueError, match="no ImageNet weights"):
        models.build_model("resnet18", weights="imagenet")


def test_mobilenet_imagenet_weights_load_from_the_keras_cache(monkeypatch, tmp_path):
    # Write the weights file Keras would cache (random values), then load it offline.
    ref = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None, alpha=0.35)
    folder = tmp_path / "models"
    folder.mkdir()
    fname = models._mobilenet_weights_file(0.35, 96)
    ref.save_weights(str(folder / fname))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    from tf_keras.src.utils import data_utils

    def cached_only(name, *a, **k):
        assert (folder / name).exists(), f"would download {name}"
        return str(folder / name)

    monkeypatch.setattr(keras.utils, "get_file", cached_only)
    monkeypatch.setattr(data_utils, "get_file", cached_only)
    m = models.build_model("mobilenet_v2", (96, 96, 1), 2, weights="imagenet", alpha=0.35)
    np.testing.assert_array_equal(m.get_layer("Conv1").get_weights()[0], ref.get_layer("Conv1").get_weights()[0])
    body = models.backbone_layers(m)
    assert body and not any(l.trainable for l in body)  # frozen first
    assert m.get_layer("predictions").trainable
    assert models.set_backbone_trainable(m, 10) == 10
    assert sum(l.trainable for l in body) >= 5  # BatchNorm layers stay frozen


def test_save_and_safe_load_round_trip_keeps_predictions(tmp_path):
    m = models.build_model("custom_cnn", (32, 32, 1), 2, width=8, depth=2)
    path = str(tmp_path / "m.keras")
    save_model(m, path)
    back = load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(back(x).numpy(), m(x).numpy(), atol=1e-6)


def test_model_file_with_python_code_is_refused(tmp_path):
    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inp, out).save(path)
    with pytest.raises(ModelFileError, match="Python code|Lambda|safe"):
        load_model(path)
    (tmp_path / "old.h5").write_bytes(b"\x89HDF")
    with pytest.raises(ModelFileError, match="refused"):
        load_model(str(tmp_path / "old.h5"))


@pytest.mark.parametrize("name", ["custom_cnn", "resnet18", "mobilenet_v2"])
def test_batchnorm_statistics_settle_quickly(name):
    # Short CPU runs must not leave inference-mode BatchNorm on its initial statistics.
    m = models.build_model(name, (32, 32, 1), 2)
    bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.momentum == pytest.approx(0.9) for l in bns)
