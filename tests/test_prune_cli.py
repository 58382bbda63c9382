"""``tfxai prune``: the comparison experiment end to end on a tiny synthetic class-folder dataset."""
from __future__ import annotations

import csv
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tfxai.cli import main
from tfxai.errors import MissingDownloadError
from tfxai.synthetic import write_synthetic_dataset

TINY = ["--model-type", "custom_cnn", "--width", "8", "--depth", "3", "--image-size", "32", "--epochs", "1",
        "--prune-epochs", "2", "--batch-size", "16", "--latency-runs", "3", "--calibration-images", "16",
        "--no-progress"]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(str(root), {"train": 80, "val": 40}, image_size=32)
    return str(root)


@pytest.fixture(scope="module")
def comparison(synthetic_root, tmp_path_factory):
    """One run of the CLI: dense + one_shot, iterative and random at 0.8 (0.5 runs in the
    checkpoint test)."""
    out = str(tmp_path_factory.mktemp("prune_out"))
    code = main(["prune", "--data-dir", synthetic_root, *TINY, "--modes", "one_shot,iterative,random",
                 "--sparsities", "0.8", "--output-dir", out])
    return code, out


def _rows(out):
    with open(os.path.join(out, "comparison.csv")) as f:
        return list(csv.DictReader(f))


def test_prune_cli_writes_table_csv_json_and_four_panel_figure(comparison):
    from matplotlib.image import imread

    from tfxai.compress.comparison_report import plot_comparison

    code, out = comparison
    assert code == 0
    rows = _rows(out)
    assert [(r["mode"], r["target_sparsity"]) for r in rows] == [
        ("dense", "0.0"), ("dense_ft", "0.0"), ("one_shot", "0.8"), ("iterative", "0.8"), ("random", "0.8")]
    table = Path(out, "comparison.txt").read_text()
    for word in ("dense", "one_shot", "iterative", "random", "nonzero", "int8 gz KB", "ratio", "budget",
                 "dense_ft = the dense model"):
        assert word in table
    doc = json.loads(Path(out, "comparison.json").read_text())
    assert len(doc["rows"]) == 5 and doc["rows"][2]["layers"]
    image = imread(os.path.join(out, "pruning_comparison.png"))
    assert image.shape[0] > 600 and image.shape[1] > 800 and image.std() > 0.05
    assert len(plot_comparison(doc["rows"]).axes) == 4


def test_prune_cli_measures_sparsity_and_sizes(comparison):
    _, out = comparison
    rows = _rows(out)
    dense = rows[0]
    assert rows[1]["mode"] == "dense_ft" and int(rows[1]["steps"]) == int(rows[2]["steps"])
    assert float(rows[1]["sparsity"]) < 0.01
    for r in rows[2:]:
        target = float(r["target_sparsity"])
        assert float(r["sparsity_pruned_layers"]) == pytest.approx(target, abs=0.01)
        assert 0 < float(r["sparsity"]) < target  # BatchNorm, first conv and small layers stay dense
        assert int(r["nonzero_params"]) < int(dense["nonzero_params"])
        assert int(r["keras_gzip_bytes"]) < int(dense["keras_gzip_bytes"])
        assert float(r["compression_ratio"]) > float(dense["compression_ratio"])
        assert float(r["latency_ms_int8"]) > 0


def test_prune_cli_gives_every_mode_the_same_step_budget_and_says_so(comparison):
    _, out = comparison
    pruned = _rows(out)[2:]
    assert len({r["steps"] for r in pruned}) == 1 and int(pruned[0]["steps"]) > 0
    table = Path(out, "comparison.txt").read_text()
    assert "the same budget for every mode" in table
    iterative_end = {int(r["pruning_end_step"]) for r in pruned if r["mode"] == "iterative"}
    assert iterative_end and all(1 < e <= int(pruned[0]["steps"]) for e in iterative_end)


def test_prune_cli_writes_tensorboard_pruning_summaries_and_models(comparison):
    _, out = comparison
    for name in ("one_shot_80", "iterative_80", "random_80"):
        assert list(Path(out, "tensorboard", name, "metrics").glob("events.out.tfevents.*"))
        assert Path(out, "models", f"{name}.keras").exists()
        assert Path(out, "tflite", f"{name}_int8.tflite").exists()
    config = json.loads(Path(out, "prune_config.json").read_text())
    assert config["class_names"] == ["NORMAL", "PNEUMONIA"] and config["image_size"] == 32
    assert "tensorflow-model-optimization" in config["versions"]


def test_pruned_model_from_the_cli_loads_through_the_classifier_interface(comparison):
    from tfxai.classifier import load_classifier

    _, out = comparison
    keras_clf = load_classifier(os.path.join(out, "models", "iterative_80.keras"))
    tflite_clf = load_classifier(os.path.join(out, "tflite", "iterative_80_int8.tflite"))
    assert keras_clf.class_names == tflite_clf.class_names == ["NORMAL", "PNEUMONIA"]
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype(np.uint8)
    assert tflite_clf.predict_proba(images).shape == keras_clf.predict_proba(images).shape == (4, 2)


def test_prune_cli_starts_from_a_checkpoint_without_dense_training(synthetic_root, tmp_path):
    from prune_helpers import tiny_cnn
    from tfxai.io.model_files import save_model

    ckpt = str(tmp_path / "trained.keras")
    save_model(tiny_cnn(), ckpt)
    out = str(tmp_path / "out")
    args = [a for a in TINY if a not in ("--image-size", "32")]
    assert main(["prune", "--data-dir", synthetic_root, *args, "--checkpoint", ckpt, "--modes", "one_shot",
                 "--sparsities", "0.5", "--no-dense-fine-tune", "--output-dir", out]) == 0
    rows = _rows(out)
    assert [r["mode"] for r in rows] == ["dense", "one_shot"] and rows[0]["steps"] == "0"
    assert float(rows[1]["sparsity_pruned_layers"]) == pytest.approx(0.5, abs=0.01)
    table = Path(out, "comparison.txt").read_text()
    assert "trained 0 epochs elsewhere" in table and "dense_ft =" not in table  # no row, no footnote


def test_prune_cli_pqat_rows_keep_the_pruned_zeros_and_report_the_extra_steps(synthetic_root, tmp_path):
    out = str(tmp_path / "out")
    assert main(["prune", "--data-dir", synthetic_root, *TINY, "--modes", "iterative,random", "--sparsities",
                 "0.5", "--pqat-epochs", "1", "--no-dense-fine-tune", "--output-dir", out]) == 0
    rows = {r["mode"]: r for r in _rows(out)}
    assert set(rows) == {"dense", "iterative", "iterative+pqat", "random"}  # no QAT row for random masks
    pruned, pqat = rows["iterative"], rows["iterative+pqat"]
    assert float(pqat["sparsity"]) == pytest.approx(float(pruned["sparsity"]), abs=1e-9)
    assert int(pqat["steps"]) > int(pruned["steps"])
    assert 0.0 <= float(pqat["int8_accuracy"]) <= 1.0
    assert Path(out, "tflite", "iterative_50_pqat_int8.tflite").exists()
    assert "quantization-aware" in Path(out, "comparison.txt").read_text()


def test_presets_small_cifar10_and_full_and_explicit_flags_win():
    import argparse

    from tfxai.commands import prune as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    small = cmd.build_config(parser.parse_args(["--dataset", "cifar10"]), "cifar10")
    assert (small.image_size, dict(small.model_options)["alpha"], small.max_train_images, small.hflip,
            small.dense_fine_tune) == (64, 0.5, 10000, True, False)
    folder = cmd.build_config(parser.parse_args(["--data-dir", "x"]), "folder")
    assert (folder.image_size, folder.channels, folder.hflip, folder.pqat_epochs,
            folder.dense_fine_tune) == (64, 1, False, 0, True)
    cifar_ft = cmd.build_config(parser.parse_args(["--dataset", "cifar10", "--dense-fine-tune"]), "cifar10")
    assert cifar_ft.dense_fine_tune is True
    full = cmd.build_config(parser.parse_args(["--data-dir", "x", "--full"]), "folder")
    assert (full.image_size, dict(full.model_options)["alpha"], full.max_train_images, full.pqat_epochs,
            full.augment) == (96, 1.0, None, 1, True)
    mine = cmd.build_config(parser.parse_args(["--data-dir", "x", "--full", "--epochs", "2", "--alpha", "0.35"]),
                            "folder")
    assert mine.epochs == 2 and dict(mine.model_options)["alpha"] == 0.35


@pytest.mark.parametrize("bad, message", [(["--sparsities", "0.5,1.2"], "1.2"), (["--modes", "magic"], "magic")])
def test_prune_cli_rejects_bad_values_by_name(synthetic_root, tmp_path, capsys, bad, message):
    assert main(["prune", "--data-dir", synthetic_root, *TINY, *bad, "--output-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_prune_cli_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert main(["prune", "--data-dir", missing, *TINY, "--output-dir", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_cifar10_archive_is_unpacked_once_into_the_cache(tmp_path):
    import cv2

    from tfxai.compress.experiment import prepare_cifar10

    src = tmp_path / "src"
    for cls in ("cat", "dog"):
        (src / "train" / cls).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(src / "train" / cls / f"{i:04d}.jpg"), np.full((32, 32, 3), 40 * i, np.uint8))
    archive = tmp_path / "c10.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "train", arcname="train")
    root = prepare_cifar10(str(archive), cache_dir=str(tmp_path / "cache"))
    assert sorted(os.listdir(os.path.join(root, "train"))) == ["cat", "dog"]
    assert root.startswith(str(tmp_path / "cache"))
    archive.unlink()
    assert prepare_cifar10(str(archive), cache_dir=str(tmp_path / "cache")) == root  # cached, no archive needed


def test_missing_cifar10_archive_names_the_path(tmp_path):
    from tfxai.compress.experiment import prepare_cifar10

    with pytest.raises(MissingDownloadError, match="nope.tar.gz"):
        prepare_cifar10(str(tmp_path / "nope.tar.gz"), cache_dir=str(tmp_path / "cache"))


@pytest.mark.slow
@pytest.mark.realdata
def test_prune_cli_on_a_slice_of_real_cifar10(shared_data, tmp_path, monkeypatch):
    full = shared_data / "cifar10" / "cifar10_train_jpg.tar.gz"
    if not full.exists():
        pytest.skip(f"{full} is not on this machine")
    # A real archive of the same layout holding 80 images per class: unpacking and decoding all
    # 50,000 would be most of this test's time (about 50 s) and prove nothing more.
    archive, kept = tmp_path / "cifar10_slice.tar.gz", {}
    with tarfile.open(full) as src, tarfile.open(archive, "w:gz") as dst:
        for member in src:
            parts = member.name.split("/")
            if member.isfile() and len(parts) >= 3 and kept.get(parts[-2], 0) < 80:
                kept[parts[-2]] = kept.get(parts[-2], 0) + 1
                dst.addfile(member, src.extractfile(member))
    assert len(kept) == 10
    monkeypatch.setenv("TFXAI_CACHE_DIR", str(tmp_path / "cache"))  # unpacked here, not where a full copy may be
    out = str(tmp_path / "out")
    assert main(["prune", "--dataset", "cifar10", "--cifar10-archive", str(archive), "--model-type", "custom_cnn",
                 "--width", "8", "--depth", "3", "--epochs", "1", "--prune-epochs", "1", "--modes", "one_shot",
                 "--sparsities", "0.5", "--max-train-images", "500", "--max-eval-images", "200",
                 "--latency-runs", "3", "--no-progress", "--output-dir", out]) == 0
    rows = _rows(out)
    # The small CIFAR-10 preset has no dense_ft row: dense, then the one pruned run.
    assert [r["mode"] for r in rows] == ["dense", "one_shot"]
    assert float(rows[1]["sparsity_pruned_layers"]) == pytest.approx(0.5, abs=0.01)
    assert 0.05 <= float(rows[0]["accuracy"]) <= 1.0  # ten classes
