"""A user's mistake is one line naming the value, exit status 2: every command's out-of-range
flags, bad model options, unwritable or misnamed outputs and inputs, bad limits in the environment;
``--debug`` shows the traceback instead (issue 13)."""
from __future__ import annotations

import pytest

from cli_helpers import one_line_error, write_xrays
from tfxai.cli import main


BAD_FLAGS = {
    "train": [("--epochs", "0"), ("--image-size", "100000"), ("--learning-rate", "inf"), ("--lr", "nan"),
              ("--val-fraction", "0.9"), ("--patience", "-3"), ("--max-train-images", "0"),
              ("--max-train-images", "-5"), ("--target-sensitivity", "1.5"), ("--batch-size", "0"),
              ("--label-smoothing", "0.7"), ("--model-options", "[1]"), ("--seed", "-1")],
    "evaluate": [("--tta", "-3"), ("--threshold", "2"), ("--target-sensitivity", "1.5")],
    "predict": [("--threshold", "-0.1"), ("--batch-size", "0")],
    "explain": [("--num-samples", "-1"), ("--max-images", "0"), ("--steps", "1"), ("--batch-size", "0")],
    "export": [("--latency-runs", "0"), ("--calibration-images", "0"), ("--eval-images", "-5"),
               ("--name", "../x"), ("--pqat-epochs", "-1")],
    "prune": [("--sparsities", "x"), ("--epochs", "0"), ("--image-size", "8"), ("--frequency", "0"),
              ("--learning-rate", "0")],
    "demo": [("--image-size", "8"), ("--epochs", "0")],
}
REQUIRED = {
    "train": ["--data-dir", "d"], "evaluate": ["--checkpoint", "m.keras"], "explain": ["--checkpoint", "m.keras",
    "--image", "x.png", "--output-dir", "o"], "predict": ["--checkpoint", "m.keras", "--image", "x.png"],
    "export": ["--checkpoint", "m.keras"], "prune": ["--data-dir", "d"], "demo": [],
}


@pytest.mark.parametrize("command,flag,value", [(c, f, v) for c, rows in BAD_FLAGS.items() for f, v in rows])
def test_every_out_of_range_flag_is_one_line_with_exit_2(command, flag, value, capsys):
    assert main([command, *REQUIRED[command], flag, value]) == 2
    one_line_error(capsys, flag)


@pytest.mark.parametrize("options,field", [('{"width": -4}', "width"), ('{"colour": 1}', "colour")])
def test_bad_model_options_are_named_before_any_work(tmp_path, synthetic_dir, capsys, options, field):
    assert main(["train", "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "o"),
                 "--model-options", options, "--no-progress"]) == 2
    line = one_line_error(capsys, "--model-options")
    assert field in line
    assert not (tmp_path / "o").exists()


def test_unknown_layer_is_one_line(tmp_path, trained_run, capsys):
    image = write_xrays(tmp_path / "img", 1)[0]
    assert main(["explain", "--checkpoint", trained_run.model_path, "--image", image, "--output-dir",
                 str(tmp_path / "x"), "--methods", "gradcam", "--layer", "no_such_layer"]) == 2
    assert "no_such_layer" in one_line_error(capsys)


@pytest.mark.parametrize("command", ["evaluate", "explain", "export"])
def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, trained_run, synthetic_dir, command, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    args = {"evaluate": ["--data-dir", synthetic_dir],
            "explain": ["--image", write_xrays(tmp_path / "i", 1)[0], "--methods", "gradcam"],
            "export": ["--quantization", "float32"]}[command]
    assert main([command, "--checkpoint", trained_run.model_path, *args, "--output-dir", str(target)]) == 2
    assert "is an existing file" in one_line_error(capsys)
    assert target.read_text() == "x"


def test_an_unwritable_output_folder_stops_before_the_work(trained_run, synthetic_dir, capsys):
    # /proc refuses new folders even to root: the check runs before any image is decoded.
    assert main(["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                 "--output-dir", "/proc/tfxai-cannot-write/eval"]) == 2
    assert "cannot write" in one_line_error(capsys)


def test_a_cache_dir_that_is_a_file_is_one_line(tmp_path, synthetic_dir, capsys):
    (tmp_path / "cache").write_text("x")
    assert main(["train", "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "o"), "--cache-dir",
                 str(tmp_path / "cache"), "--epochs", "1", "--image-size", "32", "--no-progress"]) == 2
    assert "cache" in one_line_error(capsys)


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(Exception):
        main(["predict", "--debug", "--image", str(tmp_path), "--checkpoint", str(tmp_path / "none.keras")])


@pytest.mark.parametrize("env,value", [("TFXAI_MAX_PIXELS", "lots"), ("TFXAI_MAX_FILE_MB", "0")])
def test_a_bad_limit_in_the_environment_is_one_line(tmp_path, trained_run, monkeypatch, capsys, env, value):
    monkeypatch.setenv(env, value)
    image = write_xrays(tmp_path, 1)[0]
    assert main(["predict", "--image", image, "--checkpoint", trained_run.model_path, "--output",
                 str(tmp_path / "o.png")]) == 2
    assert env in one_line_error(capsys)


def test_a_folder_given_as_a_file_and_a_file_as_a_folder_are_named(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["train", "--data-dir", str(tmp_path / "notes.txt"), "--output-dir", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert "is a file" in one_line_error(capsys)
    assert main(["predict", "--image", str(tmp_path / "notes.txt"), "--checkpoint", str(tmp_path)]) == 2
    assert "is a folder" in one_line_error(capsys)
