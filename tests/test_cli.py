import csv
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tfxai.cli import main


def test_train_cli_returns_0_and_writes_its_files(tmp_path, synthetic_dir, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data-dir", synthetic_dir, "--model-type", "custom_cnn", "--epochs", "2",
                 "--image-size", "32", "--batch-size", "32", "--output-dir", str(out), "--no-progress",
                 "--model-options", '{"width": 8, "depth": 2}', "--cache-dir", "none"])
    assert code == 0
    captured = capsys.readouterr()
    assert "train: NORMAL 80, PNEUMONIA 80 (total 160)" in captured.out
    assert "validation (threshold 0.500)" in captured.out
    assert ("inference resize: all 160 training images are square, so they were resized without keeping the "
            "aspect ratio (pre-squashed copies); inference squashes too") in captured.out
    for name in ("best_model.keras", "run_config.json", "history.csv", "training_curves.png"):
        assert (out / name).exists(), name


def test_train_cli_on_a_wrong_layout_returns_2_with_the_path(tmp_path, capsys):
    (tmp_path / "train" / "NORMAL").mkdir(parents=True)
    code = main(["train", "--data-dir", str(tmp_path), "--epochs", "1", "--output-dir", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path) in err and "Traceback" not in err
    assert not (tmp_path / "o" / "best_model.keras").exists()  # stopped before training


def test_evaluate_cli_writes_metrics_and_plots(tmp_path, trained_run, synthetic_dir, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                 "--split", "test", "--output-dir", str(out), "--no-progress", "--calibrate",
                 "--target-sensitivity", "0.9"])
    assert code == 0
    res = json.load(open(out / "metrics.json"))
    m = res["metrics"]
    assert m["n"] == 60 and sum(map(sum, m["confusion_matrix"])) == 60
    assert res["val_metrics"]["sensitivity"] >= 0.9  # threshold chosen on validation
    assert res["temperature"] > 0
    for name in ("roc_curve.png", "confusion_matrix.png", "reliability_diagram.png", "predictions.csv"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 60 and {"file", "predicted", "confidence", "true", "correct"} <= set(rows[0])
    assert "sensitivity" in capsys.readouterr().out


def test_evaluate_metrics_equal_scikit_learn_on_the_same_predictions(tmp_path, trained_run, synthetic_dir):
    from sklearn import metrics as skm

    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                 "--output-dir", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    y = np.array([r["true"] == "PNEUMONIA" for r in rows], int)
    p = np.array([float(r["p_PNEUMONIA"]) for r in rows])
    m = json.load(open(out / "metrics.json"))["metrics"]
    pred = (p >= m["threshold"]).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-9)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0), abs=1e-9)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=2e-3)  # CSV rounds to 4 decimals


def test_predict_cli_single_image_prints_class_and_writes_overlay(tmp_path, trained_run, synthetic_dir, capsys):
    img = sorted((p for p in os.listdir(os.path.join(synthetic_dir, "test", "PNEUMONIA"))))[0]
    path = os.path.join(synthetic_dir, "test", "PNEUMONIA", img)
    out = tmp_path / "overlay.png"
    assert main(["predict", "--image", path, "--checkpoint", trained_run.model_path, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"(PNEUMONIA \(P\(PNEUMONIA\) \d\.\d{3} >=|NORMAL \(P\(PNEUMONIA\) \d\.\d{3} <) threshold "
                     r"0\.\d{3}; NORMAL", printed), printed
    overlay = cv2.imread(str(out))
    assert overlay is not None and overlay.shape[1] % (2 * 32) == 0  # original and overlay side by side, enlarged


def test_predict_cli_folder_writes_csv_and_skips_bad_files(tmp_path, trained_run, synthetic_dir, capsys):
    folder = tmp_path / "incoming"
    folder.mkdir()
    src = os.path.join(synthetic_dir, "test", "NORMAL")
    for name in sorted(os.listdir(src))[:3]:
        # Non-square originals: the overlay must come back at the original resolution.
        img = cv2.imread(os.path.join(src, name), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(folder / name), cv2.resize(img, (48, 32)))
    (folder / "broken.png").write_bytes(b"garbage")
    csv_path = tmp_path / "preds.csv"
    assert main(["predict", "--image", str(folder), "--checkpoint", trained_run.model_path,
                 "--output", str(csv_path)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 3
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().out
    overlays = sorted(f for f in os.listdir(tmp_path / "overlays") if not f.startswith("."))
    assert len(overlays) == 3
    assert cv2.imread(str(tmp_path / "overlays" / overlays[0])).shape[1] % (2 * 48) == 0  # original resolution


def test_predict_cli_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["predict", "--image", str(tmp_path), "--checkpoint", str(tmp_path / "none.keras")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_quickly(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--output-dir", str(out), "--image-size", "32", "--train-images", "120",
                 "--epochs", "2", "--no-progress", "--no-explain"])
    assert code == 0
    assert (out / "model" / "best_model.keras").exists()
    assert (out / "evaluation" / "metrics.json").exists()
    assert len(os.listdir(out / "predictions")) == 3
    printed = capsys.readouterr().out
    assert "done in" in printed
    assert printed.strip().splitlines()[-1].strip() == f"tfxai serve --checkpoint {out / 'model' / 'best_model.keras'}"


def test_the_old_flag_spellings_still_work():
    """--quiet and --lr, kept for one release: the same settings as --no-progress and --learning-rate."""
    from tfxai.cli import build_parser

    def parsed(*flags):
        return vars(build_parser(only="train").parse_args(["train", "--data-dir", "d", *flags]))

    assert parsed("--quiet", "--lr", "0.01") == parsed("--no-progress", "--learning-rate", "0.01")
    assert parsed("--quiet")["progress"] is False and parsed("--lr", "0.01")["learning_rate"] == 0.01


def test_console_entry_point_and_scripts_wrap_the_cli():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "scripts", "train.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--model-type" in out.stdout and "--data-dir" in out.stdout
    out = subprocess.run([sys.executable, "-m", "tfxai", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for cmd in ("train", "evaluate", "predict", "explain", "prune", "export", "demo", "serve"):
        assert cmd in out.stdout


FLAG_OF_COMMAND = {"train": "--recipe", "evaluate": "--target-sensitivity", "predict": "--overlay-dir",
                   "explain": "--methods", "prune": "--sparsities", "export": "--quantization", "ensemble": "--members",
                   "serve": "--uncertain-band", "demo": "--train-images"}


@pytest.mark.parametrize("command", sorted(FLAG_OF_COMMAND))
def test_command_help_lists_its_flags_without_importing_tensorflow(command):
    from tfxai.cli import COMMANDS

    assert set(FLAG_OF_COMMAND) == set(COMMANDS)
    script = (f"import sys\nfrom tfxai.cli import main\ncode = main([{command!r}, '--help'])\n"
              f"print('loaded:', sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))\n"
              f"sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "loaded: []"
    assert f"usage: tfxai {command}" in out.stdout and FLAG_OF_COMMAND[command] in out.stdout
    assert out.stderr == ""


@pytest.mark.parametrize("debug", [False, True])
def test_tensorflow_start_up_log_is_shown_only_with_debug(tmp_path, debug):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFXAI_DEBUG")}
    # evaluate loads TensorFlow and a model before it finds the file missing.
    argv = [sys.executable, "-m", "tfxai", "evaluate", "--checkpoint", str(tmp_path / "none.keras"),
            "--folder", str(tmp_path)] + (["--debug"] if debug else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode != 0
    native = [line for line in out.stderr.splitlines() if re.match(r"^[IWE]\d{4} |^WARNING: All log messages", line)]
    assert bool(native) == debug, out.stderr[-2000:]
    if not debug:
        assert out.stderr.strip().splitlines() == [line for line in out.stderr.strip().splitlines()
                                                   if line.startswith("tfxai evaluate: error:")]


def test_evaluate_with_test_time_augmentation_averages_views(tmp_path, trained_run, synthetic_dir):
    from tfxai.tta import tta_proba
    from tfxai.classifier import load_classifier

    clf = load_classifier(trained_run.model_path)
    x = np.full((2, 32, 32, 1), 100, np.uint8)
    x[1, 8:24, 8:24] = 220
    one = tta_proba(clf, x, n=1)
    np.testing.assert_allclose(one, clf.predict_proba(x), atol=1e-6)  # n=1 is the plain prediction
    many = tta_proba(clf, x, n=6, seed=3)
    np.testing.assert_allclose(many, tta_proba(clf, x, n=6, seed=3), atol=1e-6)  # seeded
    np.testing.assert_allclose(many.sum(axis=1), 1.0, atol=1e-5)
    assert main(["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                 "--output-dir", str(tmp_path / "e"), "--no-progress", "--tta", "4"]) == 0
    assert json.load(open(tmp_path / "e" / "metrics.json"))["tta"] == 4
