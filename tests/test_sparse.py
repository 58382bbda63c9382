"""tfxai.compress.sparse and the latency pruning policy: what XNNPack's sparse inference needs, converted and checked."""
from __future__ import annotations

import os

import numpy as np
import pytest

from prune_helpers import fit, tiny_cnn, toy_images
from tfxai.compress import prune, sparse
from tfxai.compress.tflite import Calibration, convert_tflite
from tfxai.cli import main
from tfxai.models import build_model, symmetric_stride2_padding


@pytest.fixture(scope="module")
def mobilenets():
    """The same small grey MobileNetV2 with Keras padding and with symmetric stride-2 padding."""
    from tfxai._keras import keras

    keras.utils.set_random_seed(0)
    keras_padding = build_model("mobilenet_v2", (32, 32, 1), 2, alpha=0.35)
    return keras_padding, symmetric_stride2_padding(keras_padding)


def test_symmetric_padding_keeps_shapes_and_weights_and_satisfies_tfmot_latency_check(mobilenets):
    same, symmetric = mobilenets
    assert "ZeroPadding2D" in sparse.xnnpack_sparse_problem(same)  # tfmot's own reason
    assert sparse.xnnpack_sparse_problem(symmetric) is None
    assert symmetric.output_shape == same.output_shape
    for layer in same.layers:
        for a, b in zip(layer.get_weights(), symmetric.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    pads = [l.padding for l in symmetric.layers if type(l).__name__ == "ZeroPadding2D"]
    assert len(pads) == 5 and all(p == ((1, 1), (1, 1)) for p in pads)  # Conv1 + four stride-2 depthwise
    assert symmetric_stride2_padding(symmetric) is symmetric  # nothing left to change
    built = build_model("mobilenet_v2", (32, 32, 1), 2, alpha=0.35, padding="symmetric")
    assert sparse.xnnpack_sparse_problem(built) is None
    with pytest.raises(ValueError, match="'mirror'"):
        build_model("mobilenet_v2", (32, 32, 1), 2, alpha=0.35, padding="mirror")


def test_latency_policy_prunes_only_1x1_convs_and_refuses_keras_padding(mobilenets):
    same, symmetric = mobilenets
    policy = prune.LayerPolicy(min_params=0, xnnpack_latency=True)
    with pytest.raises(ValueError, match="padding='symmetric'"):
        prune.prune_model(same, prune.one_shot_schedule(0.8), policy)
    pruned = prune.prune_model(symmetric, prune.one_shot_schedule(0.8), policy)
    images, labels = toy_images(32, seed=1)
    fit(pruned, images, labels, epochs=1, callbacks=prune.pruning_callbacks(), learning_rate=1e-4)
    stripped = prune.strip(pruned)
    assert sparse.sparsity_1x1(stripped) == pytest.approx(0.8, abs=1e-2)
    report = prune.measure_sparsity(stripped, policy)
    pruned_layers = [ls for ls in report.layers if ls.pruned]
    assert pruned_layers and all(ls.kind == "Conv2D" for ls in pruned_layers)
    for ls in report.layers:
        layer = stripped.get_layer(ls.name)
        is_1x1 = ls.kind == "Conv2D" and tuple(layer.kernel_size) == (1, 1)
        assert ls.pruned == is_1x1, ls.name
        if not ls.pruned:
            assert ls.sparsity < 0.05  # the 3x3 stem, depthwise kernels and the Dense head stay dense


def test_sparse_conversion_stores_densify_ops_and_predicts_like_dense(mobilenets, tmp_path):
    _, symmetric = mobilenets
    from tfxai._keras import keras

    model = keras.models.clone_model(symmetric)
    model.set_weights(symmetric.get_weights())
    sparse.zero_smallest_1x1(model, 0.8)
    assert sparse.sparsity_1x1(model) == pytest.approx(0.8, abs=1e-3)
    images, _ = toy_images(40, seed=2)
    # Two conversions, not three (each ~20 s): the dense float32 file is about 4 bytes a weight.
    files = sparse.sparse_variants(model, Calibration(images, 16), variants=("float32_sparse", "int8_sparse"))
    assert sparse.count_densify_ops(files["float32_sparse"]) > 10
    assert sparse.count_densify_ops(convert_tflite(tiny_cnn(), "float32")) == 0  # a plain file has none
    assert len(files["float32_sparse"]) < 0.6 * 4 * model.count_params()  # zeros no longer stored
    rows = sparse.measure_sparse_inference(files, str(tmp_path), images, np.zeros(len(images), np.int64),
                                           _keras_proba(model, images), threads=(1,), latency_runs=3)
    by = {r["variant"]: r for r in rows}
    assert by["float32_sparse"]["max_prob_diff"] < 1e-5 and by["float32_sparse"]["agreement"] == 1.0
    assert by["int8_sparse"]["agreement"] >= 0.9 and by["int8_sparse"]["max_prob_diff"] < 0.1
    assert by["float32_sparse"]["speedup"] == 1.0 and all(r["latency_ms"] > 0 for r in rows)
    assert "float32_sparse" in sparse.format_sparse_table(rows)


def _keras_proba(model, images):
    from tfxai.classifier import probabilities

    return probabilities(model.predict(images.astype(np.float32), verbose=0))


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from tfxai.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(str(root), {"train": 64, "val": 40}, image_size=32)
    return str(root)


def test_prune_cli_latency_policy_builds_symmetric_mobilenet_with_the_xnnpack_policy():
    """The flag reaches the experiment: symmetric padding and the 1x1-only policy (the pruning
    itself is tested above; an end-to-end run converts MobileNetV2 three times, minutes on 2 cores)."""
    import argparse

    from tfxai.commands import prune as prune_command
    from tfxai.compress.prune import LayerPolicy

    parser = argparse.ArgumentParser()
    prune_command.add_arguments(parser)
    args = parser.parse_args(["--data-dir", "unused", "--policy", "latency", "--min-params", "0"])
    cfg = prune_command.build_config(args, "folder")
    assert cfg.policy == "latency" and dict(cfg.model_options)["padding"] == "symmetric"
    default = prune_command.build_config(parser.parse_args(["--data-dir", "unused"]), "folder")
    assert default.policy == "default" and "padding" not in dict(default.model_options)
    model = build_model(cfg.model_type, (32, 32, 1), 2, **dict(cfg.model_options))
    assert sparse.xnnpack_sparse_problem(model) is None
    policy = LayerPolicy(min_params=cfg.min_params, xnnpack_latency=True)
    names = prune.prunable_layer_names(model, policy)
    assert names and all(model.get_layer(n).kernel_size == (1, 1) for n in names)
    assert "predictions" not in names and "Conv1" not in names


def test_prune_cli_latency_policy_on_a_model_xnnpack_cannot_run_sparse_is_one_line(synthetic_root, tmp_path,
                                                                                   capsys):
    assert main(["prune", "--data-dir", synthetic_root, "--model-type", "custom_cnn", "--width", "8",
                 "--depth", "2", "--image-size", "32", "--policy", "latency", "--output-dir",
                 str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--policy latency" in err[0] and "symmetric" in err[0]
    assert not os.path.exists(tmp_path / "out" / "comparison.csv")
